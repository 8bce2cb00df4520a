-- The ingest hot path in one call per accepted post, with plans that are made once per connection.
--
-- Measured on the ingest benchmark: PostgreSQL spent more time planning than working. Statements
-- inside plpgsql functions take parameters, so the plan cache kept making a fresh "custom" plan
-- for each call (its cost guess never favoured the generic one); and each statement sent on its own
-- was parsed and planned again for every post. The plans here do not depend on the values (every
-- lookup is by a unique key or an indexed equality), so the generic plan is always the right one.

-- lock_thread_keys() of sql/0001 in one statement instead of a loop of them. The sorted order of
-- the keys is still what keeps concurrent batches from deadlocking.
create or replace function lock_thread_keys(p_keys text[]) returns void
language plpgsql set plan_cache_mode = force_generic_plan as $$
begin
  perform pg_advisory_xact_lock(hashtextextended(k, 7283))
     from (select distinct k from unnest(p_keys) k where k is not null and k <> '' order by 1) s;
end $$;

-- archive_message() of sql/0001, same contract and same threading, in fewer statements: each
-- statement costs an executor start-up that was worth more than its work. The candidate parents
-- are worked out with array expressions (no executor), and the steps that only matter when the
-- message names others (parent lookup, parked references) are skipped when it names none.
create or replace function archive_message(
  p_list_id bigint, p_message_id text, p_raw bytea, p_subject text, p_from_name text,
  p_from_email text, p_date timestamptz, p_in_reply_to text, p_refs text[], p_body text,
  p_has_attachments boolean)
returns table (id bigint, created boolean, added_to_list boolean, thread_id bigint, same_content boolean)
language plpgsql set plan_cache_mode = force_generic_plan as $$
declare
  v_candidates text[] := '{}';
  v_ref text;
  v_id bigint;
  v_thread bigint;
  v_parent bigint;
  v_parent_rank bigint;
  v_added boolean;
  v_same boolean;
  r record;
begin
  -- Candidate parents, closest first (In-Reply-To, then References from the last), without
  -- duplicates or self-references.
  if p_in_reply_to <> '' and p_in_reply_to <> p_message_id then
    v_candidates := array[p_in_reply_to];
  end if;
  for i in reverse coalesce(array_upper(p_refs, 1), 0) .. coalesce(array_lower(p_refs, 1), 1) loop
    v_ref := p_refs[i];
    if v_ref <> '' and v_ref <> p_message_id and not v_ref = any(v_candidates) then
      v_candidates := v_candidates || v_ref;
    end if;
  end loop;

  perform lock_thread_keys(v_candidates || p_message_id);

  select m.id, m.thread_id, m.body = p_body into v_id, v_thread, v_same from messages m where m.message_id = p_message_id;
  if v_id is not null then
    insert into list_messages (list_id, message_id, date)
      select p_list_id, v_id, m.date from messages m where m.id = v_id
      on conflict do nothing;
    get diagnostics v_added = row_count;
    id := v_id; created := false; added_to_list := v_added; thread_id := v_thread; same_content := v_same;
    return next;
    return;
  end if;

  if cardinality(v_candidates) > 0 then
    select m.id, m.thread_id, u.o into v_parent, v_thread, v_parent_rank
      from unnest(v_candidates) with ordinality u(c, o)
      join messages m on m.message_id = u.c
     order by u.o limit 1;
  end if;
  if v_parent is null then
    v_thread := nextval('thread_ids');
  end if;

  insert into messages (message_id, raw, size, subject, from_name, from_email, date, in_reply_to,
                        refs, body, has_attachments, thread_id, parent_id)
  values (p_message_id, p_raw, length(p_raw), p_subject, p_from_name, p_from_email, p_date,
          p_in_reply_to, p_refs, p_body, p_has_attachments, v_thread, v_parent)
  returning messages.id into v_id;

  if coalesce(v_parent_rank, 2147483647) > 1 and cardinality(v_candidates) > 0 then
    insert into unresolved_refs (message_id, ref, priority)
      select v_id, u.c, u.o from unnest(v_candidates) with ordinality u(c, o)
       where u.o < coalesce(v_parent_rank, 2147483647);
  end if;

  -- Messages that arrived before this one and named it: adopt them, merge their threads.
  for r in select u.message_id as child, u.priority, m.thread_id as child_thread
             from unresolved_refs u join messages m on m.id = u.message_id
            where u.ref = p_message_id loop
    update messages set parent_id = v_id where messages.id = r.child;
    delete from unresolved_refs where message_id = r.child and priority >= r.priority;
    update messages set thread_id = v_thread where messages.thread_id = r.child_thread and r.child_thread <> v_thread;
  end loop;

  insert into list_messages (list_id, message_id, date) values (p_list_id, v_id, p_date);
  id := v_id; created := true; added_to_list := true; thread_id := v_thread; same_content := true;
  return next;
end $$;

-- Posts ask whether a list has digest readers: one index entry each, not a walk over every member.
create index members_digest_readers on members (list_id) where mode = 'digest' and status = 'active';

/*
 * Accepts a post into a list: archives and threads it (archive_message), then, if the list did not
 * have it yet, queues one copy per member who takes each post (VERP envelope sender
 * p_bounce_prefix || token || '@' || p_bounce_domain), adds it to the digest when the list has
 * digest readers, and wakes the delivery workers. A duplicate adds nothing (copies = 0).
 */
create function accept_post(
  p_list_id bigint, p_message_id text, p_raw bytea, p_subject text, p_from_name text,
  p_from_email text, p_date timestamptz, p_in_reply_to text, p_refs text[], p_body text,
  p_has_attachments boolean, p_bounce_prefix text, p_bounce_domain text)
returns table (id bigint, created boolean, added_to_list boolean, thread_id bigint, same_content boolean, copies integer)
language plpgsql set plan_cache_mode = force_generic_plan as $$
declare
  a record;
  v_copies integer := 0;
begin
  select * into a from archive_message(p_list_id, p_message_id, p_raw, p_subject, p_from_name, p_from_email,
                                       p_date, p_in_reply_to, p_refs, p_body, p_has_attachments);
  if a.added_to_list then
    insert into outbox (kind, list_id, message_id, member_id, member_token, recipient, domain, envelope_from)
      select 'post', p_list_id, a.id, m.id, m.token, m.email, split_part(m.email, '@', 2),
             p_bounce_prefix || m.token || '@' || p_bounce_domain
        from members m
       where m.list_id = p_list_id and m.status = 'active' and m.mode = 'each'
      on conflict do nothing;
    get diagnostics v_copies = row_count;

    -- Only lists that have digest readers collect digest items: most posts skip this write.
    if exists (select 1 from members m where m.list_id = p_list_id and m.mode = 'digest' and m.status = 'active') then
      insert into digest_items (list_id, message_id, size)
        select p_list_id, a.id, m.size from messages m where m.id = a.id
        on conflict do nothing;
    end if;

    if v_copies > 0 then
      perform pg_notify('listkeeper_outbox', '');
    end if;
  end if;
  id := a.id; created := a.created; added_to_list := a.added_to_list; thread_id := a.thread_id;
  same_content := a.same_content; copies := v_copies;
  return next;
end $$;
