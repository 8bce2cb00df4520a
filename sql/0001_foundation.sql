-- Foundation: lists, members, archived messages, threading, failed ingests.

-- Full-text search that does not index e-mail addresses, URLs, hosts and file paths as words
-- (pgarchives does the same: otherwise every quoted "From:" line floods the index).
create text search configuration listkeeper (copy = pg_catalog.english);
alter text search configuration listkeeper drop mapping for email, url, url_path, host, file;

create table lists (
  id               bigserial primary key,
  address          text not null unique check (address = lower(address)),
  local_part       text not null,
  domain           text not null,
  name             text not null,
  description      text not null default '',
  post_policy      text not null default 'members' check (post_policy in ('open', 'members', 'moderated')),
  subscribe_policy text not null default 'confirm' check (subscribe_policy in ('open', 'confirm', 'approve')),
  archive          text not null default 'public' check (archive in ('public', 'members', 'private')),
  created_at       timestamptz not null default now(),
  unique (local_part, domain)
);
create index lists_local_part on lists (local_part);

-- Owners and moderators of a list, by address (they need not be members).
create table list_roles (
  list_id bigint not null references lists on delete cascade,
  email   text not null check (email = lower(email)),
  role    text not null check (role in ('owner', 'moderator')),
  primary key (list_id, email, role)
);

create table members (
  id           bigserial primary key,
  list_id      bigint not null references lists on delete cascade,
  email        text not null check (email = lower(email)),
  name         text,
  mode         text not null default 'each' check (mode in ('each', 'digest', 'nomail')),
  status       text not null default 'active' check (status in ('active', 'pending', 'disabled', 'unsubscribed')),
  bounce_score real not null default 0,
  -- Secret that identifies the member in VERP addresses and one-click unsubscribe links.
  token        text not null unique default replace(gen_random_uuid()::text, '-', ''),
  created_at   timestamptz not null default now(),
  updated_at   timestamptz not null default now(),
  unique (list_id, email)
);
create index members_email on members (email);

create sequence thread_ids;

-- Each message is stored once, raw bytes untouched, whatever number of lists it reached.
create table messages (
  id              bigserial primary key,
  message_id      text not null unique,          -- without angle brackets; the archive's identity
  raw             bytea not null,
  size            integer not null,
  subject         text not null default '',
  from_name       text not null default '',
  from_email      text not null default '',
  date            timestamptz not null,
  in_reply_to     text,
  refs            text[] not null default '{}',
  body            text not null default '',       -- plain text, for display and search
  has_attachments boolean not null default false,
  thread_id       bigint not null,
  parent_id       bigint references messages on delete set null,
  received_at     timestamptz not null default now(),
  hidden_reason   text,                            -- set by a moderator: gone from every page
  hidden_at       timestamptz,
  hidden_by       text,
  tsv             tsvector generated always as (
                    setweight(to_tsvector('listkeeper'::regconfig, subject), 'A') ||
                    setweight(to_tsvector('listkeeper'::regconfig, left(body, 200000)), 'D')) stored
);
create index messages_thread on messages (thread_id, date);
create index messages_tsv on messages using gin (tsv);

-- Which lists a message reached. The date is copied here so month pages read one index.
create table list_messages (
  list_id    bigint not null references lists on delete cascade,
  message_id bigint not null references messages on delete cascade,
  date       timestamptz not null,
  primary key (list_id, message_id)
);
create index list_messages_by_date on list_messages (list_id, date desc);
create index list_messages_message on list_messages (message_id);

-- References to messages we have not seen yet, parked so the thread heals when they arrive.
-- priority: 1 = In-Reply-To, then References from the closest; lower is a closer parent.
create table unresolved_refs (
  message_id bigint not null references messages on delete cascade,
  ref        text not null,
  priority   integer not null,
  primary key (message_id, ref)
);
create index unresolved_refs_ref on unresolved_refs (ref);

-- Mail we could not take in, kept with the reason (pgarchives' loaderrors). Nothing is dropped.
create table ingest_errors (
  id            bigserial primary key,
  received_at   timestamptz not null default now(),
  list_id       bigint references lists on delete set null,
  envelope_from text,
  recipients    text[] not null default '{}',
  message_id    text,
  reason        text not null,
  raw           bytea not null
);

/*
 * Transaction-scoped advisory locks on Message-IDs, always taken in the same (sorted) order, so
 * that transactions archiving several messages at once (group commit) can never deadlock with each
 * other or with single messages. Re-taking a lock already held is free.
 */
create function lock_thread_keys(p_keys text[]) returns void language plpgsql as $$
declare
  v_key text;
begin
  for v_key in select distinct k from unnest(p_keys) k where k is not null and k <> '' order by 1 loop
    perform pg_advisory_xact_lock(hashtextextended(v_key, 7283));
  end loop;
end $$;

/*
 * Archives one parsed message into a list and threads it, as pgarchives does: the parent is the
 * closest known message among In-Reply-To and then References in reverse order; unknown closer
 * candidates are parked in unresolved_refs; messages that were waiting for this one adopt it as
 * parent and their threads merge into its thread. No merging by subject.
 *
 * Advisory locks on the Message-IDs involved serialise a message with its relatives only, so
 * unrelated messages archive in parallel. A Message-ID already archived is never overwritten:
 * the existing message is added to the list (a cross-post) and `created` is false.
 */
create function archive_message(
  p_list_id bigint, p_message_id text, p_raw bytea, p_subject text, p_from_name text,
  p_from_email text, p_date timestamptz, p_in_reply_to text, p_refs text[], p_body text,
  p_has_attachments boolean)
returns table (id bigint, created boolean, added_to_list boolean, thread_id bigint, same_content boolean)
language plpgsql as $$
declare
  v_candidates text[];
  v_id bigint;
  v_thread bigint;
  v_parent bigint;
  v_parent_rank bigint;
  v_added boolean;
  v_same boolean;
  r record;
begin
  -- Candidate parents, closest first, without duplicates or self-references.
  select coalesce(array_agg(c order by rank), '{}') into v_candidates
    from (select c, min(o) as rank
            from unnest(array[p_in_reply_to] || array(select x from unnest(p_refs) with ordinality t(x, o) order by o desc))
                 with ordinality u(c, o)
           where c is not null and c <> '' and c <> p_message_id
           group by c) s;

  perform lock_thread_keys(v_candidates || p_message_id);

  select m.id, m.thread_id, m.body = p_body into v_id, v_thread, v_same from messages m where m.message_id = p_message_id;
  if v_id is not null then
    insert into list_messages (list_id, message_id, date)
      select p_list_id, v_id, m.date from messages m where m.id = v_id
      on conflict do nothing;
    get diagnostics v_added = row_count;
    return query select v_id, false, v_added, v_thread, v_same;
    return;
  end if;

  select m.id, m.thread_id, u.o into v_parent, v_thread, v_parent_rank
    from unnest(v_candidates) with ordinality u(c, o)
    join messages m on m.message_id = u.c
   order by u.o limit 1;
  if v_parent is null then
    v_thread := nextval('thread_ids');
  end if;

  insert into messages (message_id, raw, size, subject, from_name, from_email, date, in_reply_to,
                        refs, body, has_attachments, thread_id, parent_id)
  values (p_message_id, p_raw, length(p_raw), p_subject, p_from_name, p_from_email, p_date,
          p_in_reply_to, p_refs, p_body, p_has_attachments, v_thread, v_parent)
  returning messages.id into v_id;

  insert into unresolved_refs (message_id, ref, priority)
    select v_id, u.c, u.o from unnest(v_candidates) with ordinality u(c, o)
     where u.o < coalesce(v_parent_rank, 2147483647);

  -- Messages that arrived before this one and named it: adopt them, merge their threads.
  for r in select u.message_id as child, u.priority, m.thread_id as child_thread
             from unresolved_refs u join messages m on m.id = u.message_id
            where u.ref = p_message_id loop
    update messages set parent_id = v_id where messages.id = r.child;
    delete from unresolved_refs where message_id = r.child and priority >= r.priority;
    update messages set thread_id = v_thread where messages.thread_id = r.child_thread and r.child_thread <> v_thread;
  end loop;

  insert into list_messages (list_id, message_id, date) values (p_list_id, v_id, p_date);
  return query select v_id, true, true, v_thread, true;
end $$;
