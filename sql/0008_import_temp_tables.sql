-- import_messages() of sql/0004 with its working tables emptied at commit.
--
-- Profiling a 100,000-message import showed a tenth of PostgreSQL's time verifying the checksums of
-- temporary-table pages: the working tables were emptied with DELETE, nothing vacuums temporary
-- tables, so they grew by a batch's worth of dead rows per batch, spilled out of temp_buffers, and
-- every scan read them all back. Import slowed down as it went.

/*
 * Archives a batch of parsed messages into a list in a few set-based statements: the bulk form of
 * archive_message(), with the same result. The parent is the closest known candidate (In-Reply-To,
 * then References from the last); closer unknown candidates are parked in unresolved_refs;
 * parked messages that were waiting for a message of the batch adopt it; threads joined by any of
 * these links merge under the oldest thread id, so existing thread URLs stay.
 *
 * Parents and threads are worked out in a small staging table first and each new row is inserted
 * once with its final values: updating a messages row recomputes its tsvector, which costs as much
 * as the insert. Only the rare out-of-order links (an older message adopting a new parent, two
 * existing threads merging) update rows that already exist.
 *
 * It takes the same advisory locks as archive_message() (lock_thread_keys), so live mail that
 * names a message of the batch (or is named by it) is serialised with it. Message-IDs already
 * archived are not stored again; they are only added to the list. p_refs holds each message's
 * References as one space-separated string.
 */
create or replace function import_messages(
  p_list_id bigint, p_message_ids text[], p_raws bytea[], p_subjects text[], p_from_names text[],
  p_from_emails text[], p_dates timestamptz[], p_in_reply_tos text[], p_refs text[], p_bodies text[],
  p_has_attachments boolean[])
returns table (created integer, added integer)
-- Never JIT-compiled: compiling would cost more than running these statements.
language plpgsql set jit = off as $$
declare
  v_created integer;
  v_added integer;
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
   where not exists (select 1 from messages m where m.message_id = f.message_id);
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
      select c.id, c.prio, p.id as parent, p.thread_id as parent_thread
        from import_candidates c join messages p on p.message_id = c.ref
      union all
      select c.id, c.prio, p.id, null
        from import_candidates c join import_rows p on p.message_id = c.ref
    ), best as (
      select distinct on (id) id, prio, parent, parent_thread from known order by id, prio
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
                          has_attachments, thread_id, parent_id)
    select r.id, r.message_id, u.raw, length(u.raw), u.subject, u.from_name, u.from_email, u.date, r.in_reply_to, r.refs,
           u.body, u.has_attachments, r.thread_id, r.parent_id
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
    union all
    select p_list_id, m.id, m.date
      from unnest(p_message_ids) x(message_id) join messages m on m.message_id = x.message_id
     where not exists (select 1 from import_rows r where r.message_id = x.message_id)
    on conflict do nothing;
  get diagnostics v_added = row_count;

  return query select v_created, v_added;
end $$;
