-- Threads no longer reach into lists a reader of the thread may not read. A message's parent was
-- looked for among the messages of every list: a post to an open public list with In-Reply-To:
-- <X> joined the thread of X when X was a message of a private list only, and its thread number
-- (older than every public thread, the private one's) told anyone who can post there that the
-- private archive has X; when X arrived after such a post, it adopted the post and merged the
-- public thread into its own, whose old address then redirected, live.
--
-- Now a message takes as its parent only a message of its own list or of a public list
-- (threads_with), and a message adopts one that waited for it only when that one is in its list
-- or its own list is public: what joins a thread is what the thread's readers could read anyway.
-- Threads already joined stay as they are. archive_message() and import_messages() (both last
-- written in sql/0070) are as they were but for these two tests.

-- Whether message `p_message` may be the parent of a message archived to list `p_list`: it is in
-- that list, or in a public one.
create or replace function threads_with(p_message bigint, p_list bigint) returns boolean
  language sql stable
  as $$
  select exists (select 1 from list_messages lm join lists l on l.id = lm.list_id
                  where lm.message_id = p_message and (lm.list_id = p_list or l.archive = 'public'))
$$;

create or replace function archive_message(p_list_id bigint, p_message_id text, p_raw bytea, p_subject text, p_from_name text, p_from_email text, p_date timestamp with time zone, p_in_reply_to text, p_refs text[], p_body text, p_has_attachments boolean, p_exact boolean, p_checks jsonb, p_attachment_text text DEFAULT NULL::text) RETURNS TABLE(id bigint, created boolean, added_to_list boolean, thread_id bigint, same_content boolean)
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_generic_plan'
    AS $$
declare
  v_candidates text[] := '{}';
  v_ref text;
  v_id bigint;
  v_thread bigint;
  v_parent bigint;
  v_parent_rank bigint;
  v_reused boolean := false;
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

  -- Messages already archived under this Message-ID: this list's own first.
  for r in select m.id, m.thread_id, m.raw, m.date,
                  (select true from list_messages lm where lm.list_id = p_list_id and lm.message_id = m.id limit 1) is not null as in_list
             from messages m where m.message_id = p_message_id
            order by 5 desc, m.id loop
    v_reused := true;
    if r.in_list then
      id := r.id; created := false; added_to_list := false; thread_id := r.thread_id;
      same_content := message_same_content(r.raw, p_raw, false);
      return next;
      return;
    end if;
    if message_same_content(r.raw, p_raw, p_exact) then
      insert into list_messages (list_id, message_id, date) values (p_list_id, r.id, r.date);
      id := r.id; created := false; added_to_list := true; thread_id := r.thread_id; same_content := true;
      return next;
      return;
    end if;
  end loop;

  if cardinality(v_candidates) > 0 then
    -- The closest candidate we have; when a Message-ID names several messages, this list's.
    select m.id, m.thread_id, u.o into v_parent, v_thread, v_parent_rank
      from unnest(v_candidates) with ordinality u(c, o)
      join messages m on m.message_id = u.c
     where threads_with(m.id, p_list_id)
     order by u.o, (select false from list_messages lm where lm.list_id = p_list_id and lm.message_id = m.id limit 1) nulls last, m.id
     limit 1;
  end if;
  if v_parent is null then
    v_thread := nextval('thread_ids');
  end if;

  insert into messages (message_id, raw, size, subject, from_name, from_email, date, in_reply_to,
                        refs, body, has_attachments, thread_id, parent_id, checks, attachment_text)
  values (p_message_id, p_raw, length(p_raw), p_subject, p_from_name, p_from_email, p_date,
          p_in_reply_to, p_refs, p_body, p_has_attachments, v_thread, v_parent, p_checks, p_attachment_text)
  returning messages.id into v_id;

  if coalesce(v_parent_rank, 2147483647) > 1 and cardinality(v_candidates) > 0 then
    insert into unresolved_refs (message_id, ref, priority)
      select v_id, u.c, u.o from unnest(v_candidates) with ordinality u(c, o)
       where u.o < coalesce(v_parent_rank, 2147483647);
  end if;

  -- Messages that arrived before this one and named it: adopt them, merge their threads. A reused
  -- Message-ID adopts nobody: the first message with it did already.
  if not v_reused then
    for r in select u.message_id as child, u.priority, m.thread_id as child_thread
               from unresolved_refs u join messages m on m.id = u.message_id
              where u.ref = p_message_id
                and ((select l.archive = 'public' from lists l where l.id = p_list_id) is true
                     or (select true from list_messages lm where lm.list_id = p_list_id and lm.message_id = u.message_id limit 1)) loop
      update messages set parent_id = v_id where messages.id = r.child;
      delete from unresolved_refs where message_id = r.child and priority >= r.priority;
      update messages set thread_id = v_thread where messages.thread_id = r.child_thread and r.child_thread <> v_thread;
    end loop;
  end if;

  insert into list_messages (list_id, message_id, date) values (p_list_id, v_id, p_date);
  id := v_id; created := true; added_to_list := true; thread_id := v_thread; same_content := true;
  return next;
end $$;

create or replace function import_messages(p_list_id bigint, p_message_ids text[], p_raws bytea[], p_subjects text[], p_from_names text[], p_from_emails text[], p_dates timestamp with time zone[], p_in_reply_tos text[], p_refs text[], p_bodies text[], p_has_attachments boolean[], p_attachment_texts text[] DEFAULT NULL::text[]) RETURNS TABLE(created integer, added integer)
    LANGUAGE plpgsql
    SET jit TO 'off'
    AS $$
declare
  v_created integer;
  v_added integer;
  v_linked integer;
  v_from bigint[];
  v_to bigint[];
begin
  -- The thread locks of archive_message() (lock_thread_keys in sql/0001), for the whole batch.
  perform lock_thread_keys(p_message_ids || p_in_reply_tos || string_to_array(array_to_string(p_refs, ' '), ' '));

  if to_regclass('pg_temp.import_rows') is null then
    -- Emptied at each commit: deleting the rows instead leaves dead ones behind (nothing vacuums
    -- temporary tables), and every batch's scans would read all the batches before it.
    create temp table import_rows (
      ord integer primary key, id bigint not null, message_id text not null unique, in_reply_to text, refs text[] not null,
      parent_id bigint, parent_thread bigint, fresh_thread bigint not null, thread_id bigint) on commit delete rows;
    create temp table import_candidates (id bigint not null, ref text not null, prio integer not null) on commit delete rows;
    create temp table import_adoptions (child bigint primary key, child_thread bigint not null, parent bigint not null, priority integer not null) on commit delete rows;
    create temp table import_labels (thread bigint primary key, label bigint not null) on commit delete rows;
  end if;
  delete from import_rows;
  delete from import_candidates;
  delete from import_adoptions;
  delete from import_labels;

  -- The new messages: first occurrence of each Message-ID we do not have, ids drawn now.
  insert into import_rows (ord, id, message_id, in_reply_to, refs, fresh_thread)
  select ord, nextval('messages_id_seq'), message_id, nullif(in_reply_to, ''),
         coalesce(string_to_array(nullif(refs, ''), ' '), '{}'), nextval('thread_ids')
    from (select distinct on (u.message_id) u.*
            from unnest(p_message_ids, p_in_reply_tos, p_refs) with ordinality as u(message_id, in_reply_to, refs, ord)
           order by u.message_id, u.ord) f
   where not exists (select 1 from messages m
                      where m.message_id = f.message_id
                        and ((select true from list_messages lm where lm.list_id = p_list_id and lm.message_id = m.id limit 1) is not null
                             or message_same_content(m.raw, p_raws[f.ord], false)));
  get diagnostics v_created = row_count;

  if v_created > 0 then
    -- Candidate parents of each new message, closest first, numbered 1.. like archive_message().
    insert into import_candidates (id, ref, prio)
    select id, ref, row_number() over (partition by id order by rank)
      from (select n.id, c.ref, min(c.o) as rank
              from import_rows n,
                   unnest(array[n.in_reply_to] || array(select x from unnest(n.refs) with ordinality t(x, o) order by o desc))
                     with ordinality c(ref, o)
             where c.ref is not null and c.ref <> '' and c.ref <> n.message_id
             group by n.id, c.ref) s;
    analyze import_rows, import_candidates;

    -- The parent is the closest candidate we have, stored (its thread is known) or in this batch.
    with known as (
      select c.id, c.prio, p.id as parent, p.thread_id as parent_thread,
             (select true from list_messages lm where lm.list_id = p_list_id and lm.message_id = p.id limit 1) is not null as in_list
        from import_candidates c join messages p on p.message_id = c.ref
       where threads_with(p.id, p_list_id)
      union all
      select c.id, c.prio, p.id, null, true
        from import_candidates c join import_rows p on p.message_id = c.ref
    ), best as (
      -- A Message-ID may name messages in several lists: this list's own comes first.
      select distinct on (id) id, prio, parent, parent_thread from known order by id, prio, in_list desc, parent
    ), linked as (
      update import_rows r set parent_id = b.parent, parent_thread = b.parent_thread from best b where r.id = b.id
    )
    delete from import_candidates c using best b where c.id = b.id and c.prio >= b.prio;

    -- Each new message joins the thread at the top of its chain of parents within the batch:
    -- a stored message's thread, or the batch root's own new thread.
    with recursive up (ord, cur, thread, steps) as (
      select ord, parent_id, case when parent_id is null then fresh_thread else parent_thread end, 0 from import_rows
      union all
      select u.ord, p.parent_id, case when p.parent_id is null then p.fresh_thread else p.parent_thread end, u.steps + 1
        from up u join import_rows p on p.id = u.cur
       where u.thread is null and u.steps < 10000
    )
    update import_rows r set thread_id = up.thread from up where up.ord = r.ord and up.thread is not null;
    update import_rows set thread_id = fresh_thread where thread_id is null; -- a cycle of references

    -- Stored messages that were waiting for one of these adopt the closest; threads joined by an
    -- adoption merge under the smallest (oldest) thread id.
    insert into import_adoptions (child, child_thread, parent, priority)
    select distinct on (u.message_id) u.message_id, c.thread_id, p.id, u.priority
      from import_rows p join unresolved_refs u on u.ref = p.message_id join messages c on c.id = u.message_id
     -- a reused Message-ID (another list's message has it) adopts nobody: the first one did
     where (select true from messages m where m.message_id = p.message_id limit 1) is null
       -- a message of another list joins this one's thread only when this list is public
       and ((select l.archive = 'public' from lists l where l.id = p_list_id) is true
            or (select true from list_messages lm where lm.list_id = p_list_id and lm.message_id = c.id limit 1))
     order by u.message_id, u.priority;
    if found then
      insert into import_labels (thread, label)
        select t, t from (select child_thread as t from import_adoptions
                          union select r.thread_id from import_adoptions a join import_rows r on r.id = a.parent) s;
      loop
        with e as (
          select a.child_thread as a, r.thread_id as b from import_adoptions a join import_rows r on r.id = a.parent
        ), nb as (
          select x.a as thread, min(l.label) as label
            from (select a, b from e union all select b, a from e) x join import_labels l on l.thread = x.b
           group by x.a)
        update import_labels l set label = nb.label from nb where l.thread = nb.thread and nb.label < l.label;
        exit when not found;
      end loop;
      update import_rows r set thread_id = l.label from import_labels l where r.thread_id = l.thread and l.label <> l.thread;
    end if;

    insert into messages (id, message_id, raw, size, subject, from_name, from_email, date, in_reply_to, refs, body,
                          has_attachments, thread_id, parent_id, attachment_text)
    select r.id, r.message_id, u.raw, length(u.raw), u.subject, u.from_name, u.from_email, u.date, r.in_reply_to, r.refs,
           u.body, u.has_attachments, r.thread_id, r.parent_id, p_attachment_texts[r.ord]
      from import_rows r
      join unnest(p_raws, p_subjects, p_from_names, p_from_emails, p_dates, p_bodies, p_has_attachments)
             with ordinality as u(raw, subject, from_name, from_email, date, body, has_attachments, ord) on u.ord = r.ord
     order by r.ord;

    insert into unresolved_refs (message_id, ref, priority)
      select id, ref, prio from import_candidates
      on conflict do nothing;

    -- The rare out-of-order links update stored rows: closer parents, merged threads.
    if exists (select 1 from import_adoptions) then
      update messages m set parent_id = a.parent from import_adoptions a where m.id = a.child;
      delete from unresolved_refs u using import_adoptions a where u.message_id = a.child and u.priority >= a.priority;
      select array_agg(l.thread), array_agg(l.label) into v_from, v_to
        from import_labels l
       where l.label <> l.thread and l.thread not in (select fresh_thread from import_rows);
      if v_from is not null then
        update messages m set thread_id = x.label from unnest(v_from, v_to) x(thread, label) where m.thread_id = x.thread;
      end if;
    end if;
  end if;

  insert into list_messages (list_id, message_id, date)
    select p_list_id, r.id, u.date from import_rows r join unnest(p_dates) with ordinality u(date, ord) on u.ord = r.ord
    on conflict do nothing;
  get diagnostics v_added = row_count;

  -- Message-IDs of the batch that were not stored: the same message stored for another list is
  -- linked; never a different one, and never a second message under a Message-ID this list has.
  -- The batch's own new rows are set aside first, so that a fresh import checks nothing here.
  insert into list_messages (list_id, message_id, date)
    select distinct on (x.message_id) p_list_id, m.id, m.date
      from (select distinct on (u.message_id) u.*
              from unnest(p_message_ids, p_raws) with ordinality u(message_id, raw, ord)
             where not exists (select 1 from import_rows r where r.message_id = u.message_id)
             order by u.message_id, u.ord) x
      join messages m on m.message_id = x.message_id
     where (select true from messages o
             where o.message_id = x.message_id
               and (select true from list_messages lm where lm.list_id = p_list_id and lm.message_id = o.id limit 1)
             limit 1) is null
       and message_same_content(m.raw, x.raw, false)
     order by x.message_id, m.id
    on conflict do nothing;
  get diagnostics v_linked = row_count;
  v_added := v_added + v_linked;

  return query select v_created, v_added;
end $$;
