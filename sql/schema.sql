-- The schema after all migrations in this folder, for reading: the numbered files are what runs.
-- Written by `npm run schema` (test/schema-dump.ts) from pg_dump --schema-only --no-owner
-- --no-privileges of a freshly migrated database, without pg_dump's SET lines; test/schema.test.ts
-- fails when a fresh migration differs from it. Regenerate it in the commit that adds a migration.
-- To load it by hand, run `set check_function_bodies = off` first (functions come before tables).

--
-- PostgreSQL database dump
--

--
-- Name: pg_trgm; Type: EXTENSION; Schema: -; Owner: -
--

CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;

--
-- Name: EXTENSION pg_trgm; Type: COMMENT; Schema: -; Owner: -
--

COMMENT ON EXTENSION pg_trgm IS 'text similarity measurement and index searching based on trigrams';

--
-- Name: accept_post(bigint, text, bytea, text, text, text, timestamp with time zone, text, text[], text, boolean, boolean, text, text, jsonb, text); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.accept_post(p_list_id bigint, p_message_id text, p_raw bytea, p_subject text, p_from_name text, p_from_email text, p_date timestamp with time zone, p_in_reply_to text, p_refs text[], p_body text, p_has_attachments boolean, p_exact boolean, p_bounce_prefix text, p_bounce_domain text, p_checks jsonb, p_attachment_text text DEFAULT NULL::text) RETURNS TABLE(id bigint, created boolean, added_to_list boolean, thread_id bigint, same_content boolean, copies integer)
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_generic_plan'
    AS $$
declare
  a record;
  v_copies integer := 0;
begin
  select * into a from archive_message(p_list_id, p_message_id, p_raw, p_subject, p_from_name, p_from_email,
                                       p_date, p_in_reply_to, p_refs, p_body, p_has_attachments, p_exact, p_checks, p_attachment_text);
  if a.added_to_list then
    insert into outbox (kind, list_id, message_id, member_id, member_token, recipient, domain, envelope_from)
      select 'post', p_list_id, a.id, m.id, m.token, m.email, split_part(m.email, '@', 2),
             p_bounce_prefix || m.token || '@' || p_bounce_domain
        from members m
       where m.list_id = p_list_id and m.status = 'active' and m.mode = 'each'
      on conflict do nothing;
    get diagnostics v_copies = row_count;

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

--
-- Name: accounts_primary_is_verified(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.accounts_primary_is_verified() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'public'
    AS $$
begin
  insert into account_addresses (account_id, email, verified_at) values (new.id, new.email, now())
    on conflict (account_id, email) do update set verified_at = coalesce(account_addresses.verified_at, now());
  return new;
end $$;

--
-- Name: api_token_maker(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.api_token_maker() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'public'
    AS $$
begin
  select account_id into new.created_by_account from account_addresses where email = new.created_by and verified_at is not null;
  return new;
end $$;

--
-- Name: archive_list_changed(bigint[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.archive_list_changed(p_lists bigint[]) RETURNS void
    LANGUAGE sql
    SET search_path TO 'public'
    AS $$
  insert into archive_list_changes (list_id, changed_at)
  select u.list_id, clock_timestamp() from unnest(p_lists) as u(list_id)
   where u.list_id = 0 or exists (select 1 from lists l where l.id = u.list_id)
  on conflict (list_id) do update set changed_at = greatest(archive_list_changes.changed_at, excluded.changed_at)
$$;

--
-- Name: archive_list_messages_deleted(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.archive_list_messages_deleted() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'public'
    AS $$
begin
  perform archive_list_changed(array_agg(distinct list_id)) from old_rows having count(*) > 0;
  return null;
end $$;

--
-- Name: archive_list_messages_truncated(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.archive_list_messages_truncated() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'public'
    AS $$
begin
  perform archive_list_changed(array_agg(id)) from lists having count(*) > 0;
  return null;
end $$;

--
-- Name: archive_list_updated(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.archive_list_updated() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'public'
    AS $$
begin
  if tg_op = 'DELETE' then
    delete from archive_list_changes where list_id = old.id;
    if old.archive = 'public' then perform archive_list_changed(array[0::bigint]); end if;
    return null;
  end if;
  perform archive_list_changed(case when 'public' in (old.archive, new.archive) then array[new.id, 0] else array[new.id] end);
  return null;
end $$;

--
-- Name: archive_message(bigint, text, bytea, text, text, text, timestamp with time zone, text, text[], text, boolean, boolean, jsonb, text); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.archive_message(p_list_id bigint, p_message_id text, p_raw bytea, p_subject text, p_from_name text, p_from_email text, p_date timestamp with time zone, p_in_reply_to text, p_refs text[], p_body text, p_has_attachments boolean, p_exact boolean, p_checks jsonb, p_attachment_text text DEFAULT NULL::text) RETURNS TABLE(id bigint, created boolean, added_to_list boolean, thread_id bigint, same_content boolean)
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

--
-- Name: archive_reader_belongs(bigint, text[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.archive_reader_belongs(p_list_id bigint, p_emails text[]) RETURNS boolean
    LANGUAGE plpgsql STABLE
    AS $$
begin
  if p_emails is null or cardinality(p_emails) = 0 then
    return false;
  end if;
  return exists (select 1 from members m where m.list_id = p_list_id and m.email = any(p_emails) and m.status = 'active')
      or exists (select 1 from list_roles r where r.list_id = p_list_id and r.email = any(p_emails));
end $$;

--
-- Name: archive_version(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.archive_version(OUT version bigint, OUT settled boolean) RETURNS record
    LANGUAGE plpgsql
    AS $$
begin
  -- First the lock, then the counter: while this statement holds the lock no change can start.
  settled := pg_try_advisory_xact_lock(7283, 11);
  select case when is_called then last_value else 0 end into version from archive_changes;
end $$;

--
-- Name: can_read_archive(bigint, text, text[], boolean); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.can_read_archive(p_list_id bigint, p_archive text, p_emails text[], p_site_admin boolean) RETURNS boolean
    LANGUAGE sql STABLE
    AS $$
  select (p_archive = 'public') is true or p_site_admin is true or archive_reader_belongs(p_list_id, p_emails)
$$;

--
-- Name: count_archive_change(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.count_archive_change() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'public'
    AS $$
begin
  perform pg_advisory_xact_lock_shared(7283, 11);
  perform nextval('archive_changes');
  return null;
end $$;

--
-- Name: delivery_worker_lock(integer); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.delivery_worker_lock(p_key integer) RETURNS boolean
    LANGUAGE sql
    AS $$
  select pg_try_advisory_lock(7284, p_key)
$$;

--
-- Name: delivery_worker_locks(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.delivery_worker_locks() RETURNS SETOF integer
    LANGUAGE sql STABLE
    AS $$
  select objid::bigint::integer from pg_locks
   where locktype = 'advisory' and classid = 7284 and objsubid = 2 and granted
     and database = (select oid from pg_database where datname = current_database())
$$;

--
-- Name: idn_address_written(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.idn_address_written() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'public'
    AS $$
begin
  update conversions set done_at = null where name = 'address-spellings' and done_at is not null;
  return null;
end $$;

--
-- Name: import_messages(bigint, text[], bytea[], text[], text[], text[], timestamp with time zone[], text[], text[], text[], boolean[], text[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.import_messages(p_list_id bigint, p_message_ids text[], p_raws bytea[], p_subjects text[], p_from_names text[], p_from_emails text[], p_dates timestamp with time zone[], p_in_reply_tos text[], p_refs text[], p_bodies text[], p_has_attachments boolean[], p_attachment_texts text[] DEFAULT NULL::text[]) RETURNS TABLE(created integer, added integer)
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

--
-- Name: lock_thread_keys(text[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.lock_thread_keys(p_keys text[]) RETURNS void
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_generic_plan'
    AS $$
begin
  perform pg_advisory_xact_lock(hashtextextended(k, 7283))
     from (select distinct k from unnest(p_keys) k where k is not null and k <> '' order by 1) s;
end $$;

--
-- Name: members_end_vacation_on_mode_change(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.members_end_vacation_on_mode_change() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
begin
  if new.mode <> 'nomail' or new.status = 'unsubscribed' then
    new.nomail_until := null;
    new.mode_before_nomail := null;
  end if;
  return new;
end $$;

--
-- Name: message_header_for_comparison(bytea); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.message_header_for_comparison(p_raw bytea, OUT header text, OUT body_start integer) RETURNS record
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
declare
  v_crlf integer := position('\x0d0a0d0a'::bytea in p_raw);
  v_lf integer := position('\x0a0a'::bytea in p_raw);
  v_len integer;
begin
  if v_crlf > 0 and (v_lf = 0 or v_crlf < v_lf) then
    v_len := v_crlf + 1;           -- the header up to and including its last CRLF
    body_start := v_crlf + 4;
  elsif v_lf > 0 then
    v_len := v_lf;
    body_start := v_lf + 2;
  else
    v_len := length(p_raw);        -- no body at all
    body_start := length(p_raw) + 1;
  end if;
  header := replace(encode(substring(p_raw from 1 for v_len), 'escape'), E'\r\n', E'\n');
  if right(header, 1) <> E'\n' then
    header := header || E'\n';
  end if;
  header := regexp_replace(header,
    '^(received|received-spf|return-path|delivered-to|x-original-to)[ \t]*:[^\n]*\n([ \t][^\n]*\n)*', '', 'gin');
end $$;

--
-- Name: message_same_content(bytea, bytea, boolean); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.message_same_content(a bytea, b bytea, p_exact boolean) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
declare
  ha record;
  hb record;
begin
  if a = b then
    return true;
  end if;
  if p_exact then
    return false;
  end if;
  ha := message_header_for_comparison(a);
  hb := message_header_for_comparison(b);
  if ha.header <> hb.header then
    return false;
  end if;
  if substring(a from ha.body_start) = substring(b from hb.body_start) then
    return true;
  end if;
  return rtrim(replace(encode(substring(a from ha.body_start), 'escape'), E'\r\n', E'\n'), E'\n')
       = rtrim(replace(encode(substring(b from hb.body_start), 'escape'), E'\r\n', E'\n'), E'\n');
end $$;

--
-- Name: messages_search_vector(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.messages_search_vector() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'public'
    AS $$
declare
  head tsvector;
begin
  head := setweight(to_tsvector('listkeeper', search_text(new.subject)), 'A')
       || setweight(to_tsvector('listkeeper', search_text(new.from_name)), 'B');
  begin
    new.tsv := head
            || setweight(to_tsvector('listkeeper', search_text(left(new.body, 200000))), 'D')
            || case when new.attachment_text is null then ''::tsvector
                    else setweight(to_tsvector('listkeeper', search_text(left(new.attachment_text, 200000))), 'D') end;
  exception when program_limit_exceeded then
    begin
      new.tsv := head || setweight(to_tsvector('listkeeper', search_text(left(new.body, 200000))), 'D');
    exception when program_limit_exceeded then
      new.tsv := head || setweight(to_tsvector('listkeeper', search_text(left(new.body, 50000))), 'D');
    end;
  end;
  return new;
end $$;

--
-- Name: notify_change(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.notify_change() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
begin
  perform pg_notify(tg_argv[0], '');
  return null;
end $$;

--
-- Name: outbox_forget_list(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.outbox_forget_list() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'public'
    AS $$
begin
  -- Two statements so that each can use its partial index.
  delete from outbox where list_id = old.id and message_id is not null;
  delete from outbox where list_id = old.id and message_id is null;
  return null;
end $$;

--
-- Name: purge_list_messages_deleted(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.purge_list_messages_deleted() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'public'
    AS $$
begin
  perform queue_archive_purges(array_agg(list_id), array_agg(message_id), array_agg(date)) from old_rows having count(*) > 0;
  if found then perform pg_notify('listkeeper_purges', ''); end if;
  return null;
end $$;

--
-- Name: purge_list_messages_inserted(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.purge_list_messages_inserted() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'public'
    AS $$
begin
  perform queue_archive_purges(array_agg(list_id), array_agg(message_id), array_agg(date)) from new_rows having count(*) > 0;
  if found then
    insert into purges (key)
    select distinct 'message-' || o.id
      from new_rows n
      join lists l on l.id = n.list_id and l.archive = 'public'
      join messages m on m.id = n.message_id
      join messages o on o.message_id = m.message_id and o.id <> m.id
     -- an import's batch is coarsened to its lists (queue_archive_purges), which these pages carry
     where (select count(*) from new_rows) <= 50;
    perform pg_notify('listkeeper_purges', '');
  end if;
  return null;
end $$;

--
-- Name: purge_list_messages_updated(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.purge_list_messages_updated() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'public'
    AS $$
begin
  perform queue_archive_purges(array_agg(x.list_id), array_agg(x.message_id), array_agg(x.date))
     from (select o.list_id, o.message_id, o.date from old_rows o join new_rows n using (list_id, message_id)
            where o.hidden_at is distinct from n.hidden_at or o.date <> n.date
           union
           select n.list_id, n.message_id, n.date from old_rows o join new_rows n using (list_id, message_id)
            where o.hidden_at is distinct from n.hidden_at or o.date <> n.date) x
   having count(*) > 0;
  if found then perform pg_notify('listkeeper_purges', ''); end if;
  return null;
end $$;

--
-- Name: purge_lists_deleted(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.purge_lists_deleted() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'public'
    AS $$
begin
  perform queue_list_purges(array_agg(id), array_agg(local_part)) from old_rows having count(*) > 0;
  if found then perform pg_notify('listkeeper_purges', ''); end if;
  return null;
end $$;

--
-- Name: purge_lists_inserted(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.purge_lists_inserted() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'public'
    AS $$
begin
  perform queue_list_purges(array_agg(id), array_agg(local_part)) from new_rows having count(*) > 0;
  if found then perform pg_notify('listkeeper_purges', ''); end if;
  return null;
end $$;

--
-- Name: purge_lists_updated(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.purge_lists_updated() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'public'
    AS $$
begin
  perform queue_list_purges(array_agg(x.id), array_agg(x.local_part)) from (
    select o.id, o.local_part from old_rows o join new_rows n using (id)
     where (o.name, o.description, o.archive, o.address, o.local_part, o.domain)
           is distinct from (n.name, n.description, n.archive, n.address, n.local_part, n.domain)
    union
    select n.id, n.local_part from old_rows o join new_rows n using (id)
     where o.local_part <> n.local_part) x
  having count(*) > 0;
  if found then perform pg_notify('listkeeper_purges', ''); end if;
  return null;
end $$;

--
-- Name: purge_messages_deleted(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.purge_messages_deleted() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'public'
    AS $$
begin
  perform queue_thread_purges(array_agg(thread_id)) from old_rows having count(*) > 0;
  if found then
    insert into purges (key) select distinct 'message-' || id from old_rows;
    perform pg_notify('listkeeper_purges', '');
  end if;
  return null;
end $$;

--
-- Name: purge_messages_updated(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.purge_messages_updated() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'public'
    AS $$
begin
  perform queue_thread_purges(array_agg(t)) from (
    select o.thread_id from old_rows o join new_rows n using (id)
     where o.thread_id <> n.thread_id or o.parent_id is distinct from n.parent_id
    union
    select n.thread_id from old_rows o join new_rows n using (id)
     where o.thread_id <> n.thread_id or o.parent_id is distinct from n.parent_id) x(t)
   having count(*) > 0;
  if found then perform pg_notify('listkeeper_purges', ''); end if;
  return null;
end $$;

--
-- Name: purging(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.purging() RETURNS boolean
    LANGUAGE sql STABLE
    AS $$
      select coalesce((select enabled from public.purge_switch), false)
    $$;

--
-- Name: queue_archive_purges(bigint[], bigint[], timestamp with time zone[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.queue_archive_purges(p_lists bigint[], p_messages bigint[], p_dates timestamp with time zone[]) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'public'
    AS $$
begin
  -- Many messages at once (an import, a list's archive hidden or deleted): the list's pages
  -- whole, rather than each message's neighbours and months, which cost more than the import.
  if cardinality(p_messages) > 50 then
    insert into purges (key)
    select 'site' union select 'list-' || l.id from lists l where l.id = any(p_lists) and l.archive = 'public';
    return;
  end if;
  insert into purges (key)
  with r as (
    select distinct r.list_id, r.message_id, r.date, m.thread_id
      from unnest(p_lists, p_messages, p_dates) as r(list_id, message_id, date)
      join lists l on l.id = r.list_id and l.archive = 'public'
      left join messages m on m.id = r.message_id
  ), threads as (
    select distinct list_id, thread_id from r where thread_id is not null
  )
  select 'site' from r
  union select 'latest-' || list_id from r
  union select 'month-' || list_id || '-' || to_char(date at time zone 'UTC', 'YYYY-MM') from r
  union select 'message-' || message_id from r
  union select 'thread-' || thread_id from threads
  union select 'month-' || t.list_id || '-' || d.month from threads t cross join lateral (
          -- by the thread's index, then each message's row in the list (`offset 0` keeps the planner
          -- from joining the other way round: a scan of the whole list per post)
          select distinct to_char(lm.date at time zone 'UTC', 'YYYY-MM') as month
            from messages x cross join lateral (
                   select y.date from list_messages y where y.list_id = t.list_id and y.message_id = x.id offset 0) lm
           where x.thread_id = t.thread_id) d
  union select 'message-' || n.id from r cross join lateral (
          select coalesce(
            (select max(y.message_id) from (select message_id from list_messages
              where list_id = r.list_id and date = r.date and message_id < r.message_id and hidden_at is null offset 0) y),
            (select max(y.message_id) from (select message_id from list_messages
              where list_id = r.list_id and hidden_at is null and date = (
                select max(z.date) from list_messages z where z.list_id = r.list_id and z.date < r.date and z.hidden_at is null) offset 0) y)) as id) n
         where n.id is not null
  union select 'message-' || n.id from r cross join lateral (
          select coalesce(
            (select min(y.message_id) from (select message_id from list_messages
              where list_id = r.list_id and date = r.date and message_id > r.message_id and hidden_at is null offset 0) y),
            (select min(y.message_id) from (select message_id from list_messages
              where list_id = r.list_id and hidden_at is null and date = (
                select min(z.date) from list_messages z where z.list_id = r.list_id and z.date > r.date and z.hidden_at is null) offset 0) y)) as id) n
         where n.id is not null;
end $$;

--
-- Name: queue_list_purges(bigint[], text[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.queue_list_purges(p_lists bigint[], p_local_parts text[]) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'public'
    AS $$
begin
  insert into purges (key)
  select 'site'
  union select 'list-' || unnest(p_lists)
  union select 'list-' || l.id from lists l where l.local_part = any(p_local_parts);
end $$;

--
-- Name: queue_thread_purges(bigint[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.queue_thread_purges(p_threads bigint[]) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'public'
    AS $$
begin
  -- Many threads at once (an import joining threads as their parents arrive): every public list.
  if cardinality(p_threads) > 50 then
    insert into purges (key) select 'site' union select 'list-' || l.id from lists l where l.archive = 'public';
    return;
  end if;
  insert into purges (key)
  with t as (select distinct unnest(p_threads) as thread_id)
  select 'thread-' || thread_id from t
  union select 'month-' || d.list_id || '-' || d.month from t cross join lateral (
          select distinct lm.list_id, to_char(lm.date at time zone 'UTC', 'YYYY-MM') as month
            from messages x cross join lateral (
                   select y.list_id, y.date from list_messages y
                     join lists l on l.id = y.list_id and l.archive = 'public'
                    where y.message_id = x.id offset 0) lm
           where x.thread_id = t.thread_id) d;
end $$;

--
-- Name: record_message_digests(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.record_message_digests() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'public'
    AS $$
begin
  insert into message_digests (message_id, sha256)
  select n.id, sha256(n.raw) from new_rows n
  on conflict (message_id) do nothing;
  return null;
end $$;

--
-- Name: record_thread_moves(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.record_thread_moves() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'public'
    AS $$
begin
  insert into thread_moves (old_thread, new_thread, lists)
    select o.thread_id, n.thread_id, coalesce(array_agg(distinct lm.list_id) filter (where lm.list_id is not null), '{}')
      from old_rows o join new_rows n on n.id = o.id
      left join list_messages lm on lm.message_id = o.id
     where o.thread_id <> n.thread_id
       -- a thread that still has messages was split, not moved
       and not exists (select 1 from messages m where m.thread_id = o.thread_id)
     group by o.thread_id, n.thread_id
  on conflict (old_thread) do update
    set new_thread = excluded.new_thread, moved_at = now(),
        lists = array(select distinct x from unnest(coalesce(thread_moves.lists, '{}') || excluded.lists) x order by x);
  return null;
end $$;

--
-- Name: search_text(text); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.search_text(t text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
declare
  v text := t;
begin
  if v ~ '[\u00ad]' then
    v := replace(v, E'\u00ad', '');
  end if;
  if v ~ '[\u0080-\u00ac\u00ae-\u00bf\u00d7\u00f7\u2000-\u200b\u200e-\u206f\u20a0-\u20cf\u2100-\u214f\u2190-\u2bff\u3000-\u303f\ufe30-\ufe6f\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65\U0001f000-\U0001faff]' then
    v := regexp_replace(v, '[\u0080-\u00ac\u00ae-\u00bf\u00d7\u00f7\u2000-\u200b\u200e-\u206f\u20a0-\u20cf\u2100-\u214f\u2190-\u2bff\u3000-\u303f\ufe30-\ufe6f\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65\U0001f000-\U0001faff]', ' ', 'g');
  end if;
  if v !~ '[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f]' then
    return v;
  end if;
  return (select string_agg(
                   case when length(r.m[1]) > 1 and r.m[1] ~ '^[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f]'
                        then ' ' || case when length(r.m[1]) <= 64
                                         then (select string_agg(substr(r.m[1], i, 2), ' ' order by i) from generate_series(1, length(r.m[1]) - 1) i)
                                         else (select string_agg(p.c || p.next, ' ' order by p.o)
                                                 from (select s.c, lead(s.c) over (order by s.o) as next, s.o
                                                         from regexp_split_to_table(r.m[1], '') with ordinality s(c, o)) p
                                                where p.next is not null) end || ' '
                        else r.m[1] end, '' order by r.n)
            from regexp_matches(v, '[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f]+|[^\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f]+', 'g') with ordinality as r(m, n));
end $$;

--
-- Name: threads_with(bigint, bigint); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.threads_with(p_message bigint, p_list bigint) RETURNS boolean
    LANGUAGE sql STABLE
    AS $$
  select exists (select 1 from list_messages lm join lists l on l.id = lm.list_id
                  where lm.message_id = p_message and (lm.list_id = p_list or l.archive = 'public'))
$$;

--
-- Name: listkeeper; Type: TEXT SEARCH CONFIGURATION; Schema: public; Owner: -
--

CREATE TEXT SEARCH CONFIGURATION public.listkeeper (
    PARSER = pg_catalog."default" );

ALTER TEXT SEARCH CONFIGURATION public.listkeeper
    ADD MAPPING FOR asciiword WITH english_stem;

ALTER TEXT SEARCH CONFIGURATION public.listkeeper
    ADD MAPPING FOR word WITH english_stem;

ALTER TEXT SEARCH CONFIGURATION public.listkeeper
    ADD MAPPING FOR numword WITH simple;

ALTER TEXT SEARCH CONFIGURATION public.listkeeper
    ADD MAPPING FOR sfloat WITH simple;

ALTER TEXT SEARCH CONFIGURATION public.listkeeper
    ADD MAPPING FOR version WITH simple;

ALTER TEXT SEARCH CONFIGURATION public.listkeeper
    ADD MAPPING FOR hword_numpart WITH simple;

ALTER TEXT SEARCH CONFIGURATION public.listkeeper
    ADD MAPPING FOR hword_part WITH english_stem;

ALTER TEXT SEARCH CONFIGURATION public.listkeeper
    ADD MAPPING FOR hword_asciipart WITH english_stem;

ALTER TEXT SEARCH CONFIGURATION public.listkeeper
    ADD MAPPING FOR numhword WITH simple;

ALTER TEXT SEARCH CONFIGURATION public.listkeeper
    ADD MAPPING FOR asciihword WITH english_stem;

ALTER TEXT SEARCH CONFIGURATION public.listkeeper
    ADD MAPPING FOR hword WITH english_stem;

ALTER TEXT SEARCH CONFIGURATION public.listkeeper
    ADD MAPPING FOR "float" WITH simple;

ALTER TEXT SEARCH CONFIGURATION public.listkeeper
    ADD MAPPING FOR "int" WITH simple;

ALTER TEXT SEARCH CONFIGURATION public.listkeeper
    ADD MAPPING FOR uint WITH simple;

--
-- Name: account_addresses; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.account_addresses (
    account_id bigint NOT NULL,
    email text NOT NULL,
    verified_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT account_addresses_email_check CHECK ((email = lower(email)))
);

--
-- Name: accounts; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.accounts (
    id bigint NOT NULL,
    email text NOT NULL,
    password_hash text,
    is_site_admin boolean DEFAULT false NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    last_login_at timestamp with time zone,
    site_admin_via text,
    CONSTRAINT accounts_email_check CHECK ((email = lower(email))),
    CONSTRAINT accounts_site_admin_via_admin CHECK (((site_admin_via IS NULL) OR is_site_admin)),
    CONSTRAINT accounts_site_admin_via_check CHECK ((site_admin_via = ANY (ARRAY['oidc'::text, 'ldap'::text])))
);

--
-- Name: accounts_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.accounts_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

--
-- Name: accounts_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.accounts_id_seq OWNED BY public.accounts.id;

--
-- Name: address_spellings; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.address_spellings (
    tbl text NOT NULL,
    email text NOT NULL,
    canonical text,
    outcome text NOT NULL,
    rows_changed integer DEFAULT 0 NOT NULL,
    decided_at timestamp with time zone DEFAULT now() NOT NULL
);

--
-- Name: api_tokens; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.api_tokens (
    id bigint NOT NULL,
    name text NOT NULL,
    scope text NOT NULL,
    token_hash text NOT NULL,
    created_by text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    last_used_at timestamp with time zone,
    revoked_at timestamp with time zone,
    revoked_by text,
    created_by_account bigint,
    expires_at timestamp with time zone,
    CONSTRAINT api_tokens_name_check CHECK (((length(name) >= 1) AND (length(name) <= 80))),
    CONSTRAINT api_tokens_scope_check CHECK ((scope = ANY (ARRAY['read'::text, 'moderate'::text, 'admin'::text])))
);

--
-- Name: api_tokens_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.api_tokens_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

--
-- Name: api_tokens_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.api_tokens_id_seq OWNED BY public.api_tokens.id;

--
-- Name: archive_changes; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.archive_changes
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

--
-- Name: archive_import_batches; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.archive_import_batches (
    import_id bigint NOT NULL,
    first_offset bigint NOT NULL,
    next_offset bigint NOT NULL,
    next_index integer NOT NULL,
    seen integer NOT NULL,
    imported integer NOT NULL,
    duplicates integer NOT NULL,
    broken integer NOT NULL,
    committed_at timestamp with time zone DEFAULT now() NOT NULL,
    part smallint DEFAULT 0 NOT NULL,
    parts smallint DEFAULT 1 NOT NULL
);

--
-- Name: archive_imports; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.archive_imports (
    id bigint NOT NULL,
    list_id bigint NOT NULL,
    source text NOT NULL,
    fingerprint text NOT NULL,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    finished_at timestamp with time zone
);

--
-- Name: archive_imports_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.archive_imports_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

--
-- Name: archive_imports_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.archive_imports_id_seq OWNED BY public.archive_imports.id;

--
-- Name: archive_list_changes; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.archive_list_changes (
    list_id bigint NOT NULL,
    changed_at timestamp with time zone NOT NULL
);

--
-- Name: audit_log; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.audit_log (
    id bigint NOT NULL,
    at timestamp with time zone DEFAULT now() NOT NULL,
    actor text NOT NULL,
    action text NOT NULL,
    list_id bigint,
    list_address text,
    target text,
    detail jsonb DEFAULT '{}'::jsonb NOT NULL
);

--
-- Name: audit_log_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.audit_log_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

--
-- Name: audit_log_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.audit_log_id_seq OWNED BY public.audit_log.id;

--
-- Name: bounces; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.bounces (
    id bigint NOT NULL,
    list_id bigint,
    member_id bigint,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    source text NOT NULL,
    recipient text,
    kind text NOT NULL,
    category text NOT NULL,
    status text,
    diagnostic text,
    counted boolean NOT NULL,
    score_after real,
    probe boolean DEFAULT false NOT NULL,
    CONSTRAINT bounces_kind_check CHECK ((kind = ANY (ARRAY['hard'::text, 'soft'::text, 'policy'::text, 'unknown'::text]))),
    CONSTRAINT bounces_source_check CHECK ((source = ANY (ARRAY['dsn'::text, 'smtp'::text])))
);

--
-- Name: bounces_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.bounces_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

--
-- Name: bounces_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.bounces_id_seq OWNED BY public.bounces.id;

--
-- Name: chore_runs; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.chore_runs (
    name text NOT NULL,
    ran_at timestamp with time zone NOT NULL
);

--
-- Name: conversion_skips; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.conversion_skips (
    name text NOT NULL,
    key bigint NOT NULL,
    error text NOT NULL,
    worker text,
    skipped_at timestamp with time zone DEFAULT now() NOT NULL
);

--
-- Name: conversions; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.conversions (
    name text NOT NULL,
    last_key bigint DEFAULT 0 NOT NULL,
    rows_done bigint DEFAULT 0 NOT NULL,
    rows_changed bigint DEFAULT 0 NOT NULL,
    total_estimate bigint,
    started_at timestamp with time zone,
    done_at timestamp with time zone,
    locked_by text,
    locked_at timestamp with time zone,
    error text,
    error_at timestamp with time zone
);

--
-- Name: delivery_hourly; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.delivery_hourly (
    hour timestamp with time zone NOT NULL,
    sent integer DEFAULT 0 NOT NULL,
    deferred integer DEFAULT 0 NOT NULL,
    failed integer DEFAULT 0 NOT NULL,
    bounced integer DEFAULT 0 NOT NULL
);

--
-- Name: delivery_worker_lock_keys; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.delivery_worker_lock_keys
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
    CYCLE;

--
-- Name: delivery_workers; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.delivery_workers (
    name text NOT NULL,
    host text NOT NULL,
    pid integer NOT NULL,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    heartbeat_at timestamp with time zone DEFAULT now() NOT NULL,
    lock_key integer,
    lease_seconds integer,
    row_leases boolean DEFAULT false NOT NULL
);

--
-- Name: digest_items; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.digest_items (
    list_id bigint NOT NULL,
    message_id bigint NOT NULL,
    size integer NOT NULL,
    added_at timestamp with time zone DEFAULT now() NOT NULL
);

--
-- Name: dmarc_policies; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.dmarc_policies (
    domain text NOT NULL,
    policy text NOT NULL,
    fetched_at timestamp with time zone DEFAULT now() NOT NULL,
    has_record boolean DEFAULT true NOT NULL,
    CONSTRAINT dmarc_policies_policy_check CHECK ((policy = ANY (ARRAY['none'::text, 'quarantine'::text, 'reject'::text])))
);

--
-- Name: held_messages; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.held_messages (
    id bigint NOT NULL,
    list_id bigint NOT NULL,
    message_id text NOT NULL,
    raw bytea NOT NULL,
    size integer NOT NULL,
    from_email text DEFAULT ''::text NOT NULL,
    from_name text DEFAULT ''::text NOT NULL,
    subject text DEFAULT ''::text NOT NULL,
    envelope_from text,
    reason text NOT NULL,
    rule text NOT NULL,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    state text DEFAULT 'held'::text NOT NULL,
    decided_at timestamp with time zone,
    decided_by text,
    decision_reason text,
    notified_at timestamp with time zone,
    checks jsonb,
    mail_token_hash text,
    CONSTRAINT held_messages_state_check CHECK ((state = ANY (ARRAY['held'::text, 'approved'::text, 'rejected'::text, 'discarded'::text])))
);

--
-- Name: held_messages_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.held_messages_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

--
-- Name: held_messages_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.held_messages_id_seq OWNED BY public.held_messages.id;

--
-- Name: ingest_errors; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.ingest_errors (
    id bigint NOT NULL,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    list_id bigint,
    envelope_from text,
    recipients text[] DEFAULT '{}'::text[] NOT NULL,
    message_id text,
    reason text NOT NULL,
    raw bytea NOT NULL,
    size bigint,
    sha256 text,
    client text
);

--
-- Name: ingest_errors_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.ingest_errors_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

--
-- Name: ingest_errors_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.ingest_errors_id_seq OWNED BY public.ingest_errors.id;

--
-- Name: list_messages; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.list_messages (
    list_id bigint NOT NULL,
    message_id bigint NOT NULL,
    date timestamp with time zone NOT NULL,
    hidden_reason text,
    hidden_at timestamp with time zone,
    hidden_by text,
    visibility_changed_at timestamp with time zone
)
WITH (autovacuum_vacuum_insert_scale_factor='0.02');

--
-- Name: list_roles; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.list_roles (
    list_id bigint NOT NULL,
    email text NOT NULL,
    role text NOT NULL,
    CONSTRAINT list_roles_email_check CHECK ((email = lower(email))),
    CONSTRAINT list_roles_role_check CHECK ((role = ANY (ARRAY['owner'::text, 'moderator'::text])))
);

--
-- Name: lists; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.lists (
    id bigint NOT NULL,
    address text NOT NULL,
    local_part text NOT NULL,
    domain text NOT NULL,
    name text NOT NULL,
    description text DEFAULT ''::text NOT NULL,
    post_policy text DEFAULT 'members'::text NOT NULL,
    subscribe_policy text DEFAULT 'confirm'::text NOT NULL,
    archive text DEFAULT 'public'::text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    subject_prefix text DEFAULT ''::text NOT NULL,
    footer text DEFAULT ''::text NOT NULL,
    reply_to text DEFAULT 'none'::text NOT NULL,
    reply_to_address text,
    dmarc_mitigation text DEFAULT 'none'::text NOT NULL,
    dkim_domain text,
    dkim_selector text,
    dkim_private_key text,
    max_message_size integer DEFAULT 0 NOT NULL,
    digest_size_threshold integer DEFAULT 30720 NOT NULL,
    digest_interval_hours integer DEFAULT 24 NOT NULL,
    digest_volume integer DEFAULT 1 NOT NULL,
    digest_issue integer DEFAULT 0 NOT NULL,
    digest_last_sent_at timestamp with time zone,
    bounce_threshold real DEFAULT 3.0 NOT NULL,
    held_notice_minutes integer DEFAULT 15 NOT NULL,
    held_notified_at timestamp with time zone,
    auth_policy text DEFAULT 'hold'::text NOT NULL,
    spam_hold_score real DEFAULT 6,
    spam_reject_score real DEFAULT 15,
    bounce_warnings integer DEFAULT 3 NOT NULL,
    bounce_warning_interval_days integer DEFAULT 7 NOT NULL,
    notify_held_sender boolean DEFAULT false NOT NULL,
    roster_visibility text DEFAULT 'owners'::text NOT NULL,
    template_welcome text DEFAULT ''::text NOT NULL,
    template_goodbye text DEFAULT ''::text NOT NULL,
    template_held text DEFAULT ''::text NOT NULL,
    template_confirm text DEFAULT ''::text NOT NULL,
    send_welcome boolean DEFAULT true NOT NULL,
    send_goodbye boolean DEFAULT true NOT NULL,
    synchronous_commit text,
    CONSTRAINT lists_address_check CHECK ((address = lower(address))),
    CONSTRAINT lists_archive_check CHECK ((archive = ANY (ARRAY['public'::text, 'members'::text, 'private'::text]))),
    CONSTRAINT lists_auth_policy_check CHECK ((auth_policy = ANY (ARRAY['accept'::text, 'hold'::text, 'reject'::text]))),
    CONSTRAINT lists_bounce_threshold_check CHECK ((bounce_threshold > (0)::double precision)),
    CONSTRAINT lists_bounce_warning_interval_days_check CHECK (((bounce_warning_interval_days >= 1) AND (bounce_warning_interval_days <= 365))),
    CONSTRAINT lists_bounce_warnings_check CHECK (((bounce_warnings >= 0) AND (bounce_warnings <= 100))),
    CONSTRAINT lists_digest_interval_hours_check CHECK ((digest_interval_hours > 0)),
    CONSTRAINT lists_digest_size_threshold_check CHECK ((digest_size_threshold > 0)),
    CONSTRAINT lists_dmarc_mitigation_check CHECK ((dmarc_mitigation = ANY (ARRAY['none'::text, 'munge_from'::text, 'munge_from_always'::text, 'wrap_message'::text]))),
    CONSTRAINT lists_held_notice_minutes_check CHECK ((held_notice_minutes >= 0)),
    CONSTRAINT lists_max_message_size_check CHECK ((max_message_size >= 0)),
    CONSTRAINT lists_post_policy_check CHECK ((post_policy = ANY (ARRAY['open'::text, 'members'::text, 'moderated'::text]))),
    CONSTRAINT lists_reply_to_check CHECK ((reply_to = ANY (ARRAY['none'::text, 'list'::text, 'address'::text]))),
    CONSTRAINT lists_roster_visibility_check CHECK ((roster_visibility = ANY (ARRAY['owners'::text, 'members'::text, 'anyone'::text]))),
    CONSTRAINT lists_subscribe_policy_check CHECK ((subscribe_policy = ANY (ARRAY['open'::text, 'confirm'::text, 'approve'::text]))),
    CONSTRAINT lists_synchronous_commit_check CHECK ((synchronous_commit = ANY (ARRAY['local'::text, 'remote_write'::text, 'on'::text, 'remote_apply'::text])))
);

--
-- Name: lists_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.lists_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

--
-- Name: lists_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.lists_id_seq OWNED BY public.lists.id;

--
-- Name: login_tokens; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.login_tokens (
    token_hash text NOT NULL,
    email text NOT NULL,
    purpose text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone NOT NULL,
    used_at timestamp with time zone,
    account_id bigint,
    CONSTRAINT login_tokens_email_check CHECK ((email = lower(email))),
    CONSTRAINT login_tokens_purpose_check CHECK (((purpose = ANY (ARRAY['login'::text, 'reset'::text, 'verify'::text])) AND ((purpose = 'verify'::text) = (account_id IS NOT NULL))))
);

--
-- Name: member_token_aliases; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.member_token_aliases (
    token text NOT NULL,
    member_id bigint NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);

--
-- Name: members; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.members (
    id bigint NOT NULL,
    list_id bigint NOT NULL,
    email text NOT NULL,
    name text,
    mode text DEFAULT 'each'::text NOT NULL,
    status text DEFAULT 'active'::text NOT NULL,
    bounce_score real DEFAULT 0 NOT NULL,
    token text DEFAULT replace((gen_random_uuid())::text, '-'::text, ''::text) NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    digest_format text DEFAULT 'mime'::text NOT NULL,
    bounce_updated_at timestamp with time zone,
    disabled_at timestamp with time zone,
    disabled_reason text,
    bounce_probe_token text,
    bounce_probe_sent_at timestamp with time zone,
    bounce_warnings_sent integer DEFAULT 0 NOT NULL,
    bounce_warned_at timestamp with time zone,
    unsubscribed_reason text,
    nomail_until timestamp with time zone,
    mode_before_nomail text,
    import_mode text,
    import_digest_format text,
    CONSTRAINT members_digest_format_check CHECK ((digest_format = ANY (ARRAY['mime'::text, 'plain'::text]))),
    CONSTRAINT members_email_check CHECK ((email = lower(email))),
    CONSTRAINT members_import_digest_format_check CHECK ((import_digest_format = ANY (ARRAY['mime'::text, 'plain'::text]))),
    CONSTRAINT members_import_mode_check CHECK ((import_mode = ANY (ARRAY['each'::text, 'digest'::text, 'nomail'::text]))),
    CONSTRAINT members_mode_before_nomail_check CHECK ((mode_before_nomail = ANY (ARRAY['each'::text, 'digest'::text]))),
    CONSTRAINT members_mode_check CHECK ((mode = ANY (ARRAY['each'::text, 'digest'::text, 'nomail'::text]))),
    CONSTRAINT members_nomail_until_check CHECK (((nomail_until IS NULL) OR (mode = 'nomail'::text))),
    CONSTRAINT members_status_check CHECK ((status = ANY (ARRAY['active'::text, 'pending'::text, 'disabled'::text, 'unsubscribed'::text])))
);

--
-- Name: members_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.members_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

--
-- Name: members_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.members_id_seq OWNED BY public.members.id;

--
-- Name: message_digests; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.message_digests (
    message_id bigint NOT NULL,
    sha256 bytea NOT NULL
);

--
-- Name: messages; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.messages (
    id bigint NOT NULL,
    message_id text NOT NULL,
    raw bytea NOT NULL,
    size integer NOT NULL,
    subject text DEFAULT ''::text NOT NULL,
    from_name text DEFAULT ''::text NOT NULL,
    from_email text DEFAULT ''::text NOT NULL,
    date timestamp with time zone NOT NULL,
    in_reply_to text,
    refs text[] DEFAULT '{}'::text[] NOT NULL,
    body text DEFAULT ''::text NOT NULL,
    has_attachments boolean DEFAULT false NOT NULL,
    thread_id bigint NOT NULL,
    parent_id bigint,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    checks jsonb,
    tsv tsvector,
    attachment_text text
)
WITH (autovacuum_vacuum_insert_scale_factor='0.02');
ALTER TABLE ONLY public.messages ALTER COLUMN tsv SET STORAGE MAIN;

--
-- Name: messages_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.messages_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

--
-- Name: messages_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.messages_id_seq OWNED BY public.messages.id;

--
-- Name: outbound_mail; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.outbound_mail (
    id bigint NOT NULL,
    raw bytea NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);

--
-- Name: outbound_mail_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.outbound_mail_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

--
-- Name: outbound_mail_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.outbound_mail_id_seq OWNED BY public.outbound_mail.id;

--
-- Name: outbox; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.outbox (
    id bigint NOT NULL,
    kind text NOT NULL,
    list_id bigint,
    message_id bigint,
    mail_id bigint,
    member_id bigint,
    member_token text,
    recipient text NOT NULL,
    domain text NOT NULL,
    envelope_from text NOT NULL,
    state text DEFAULT 'queued'::text NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    run_at timestamp with time zone DEFAULT now() NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    locked_by text,
    locked_at timestamp with time zone,
    sent_at timestamp with time zone,
    last_error text,
    bounce_stage text,
    bounce_tries smallint DEFAULT 0 NOT NULL,
    bounce_tried_at timestamp with time zone,
    CONSTRAINT outbox_check CHECK (((message_id IS NULL) <> (mail_id IS NULL))),
    CONSTRAINT outbox_kind_check CHECK ((kind = ANY (ARRAY['post'::text, 'digest'::text, 'notice'::text]))),
    CONSTRAINT outbox_state_check CHECK ((state = ANY (ARRAY['queued'::text, 'sending'::text, 'sent'::text, 'failed'::text, 'cancelled'::text])))
);

--
-- Name: outbox_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.outbox_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

--
-- Name: outbox_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.outbox_id_seq OWNED BY public.outbox.id;

--
-- Name: purge_switch; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.purge_switch (
    only_row boolean DEFAULT true NOT NULL,
    enabled boolean DEFAULT false NOT NULL,
    changed_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT purge_switch_only_row_check CHECK (only_row)
);

--
-- Name: purges; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.purges (
    id bigint NOT NULL,
    key text NOT NULL,
    queued_at timestamp with time zone DEFAULT now() NOT NULL,
    run_at timestamp with time zone DEFAULT now() NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    locked_by text,
    locked_at timestamp with time zone,
    last_error text,
    sent_at timestamp with time zone
);

--
-- Name: purges_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.purges_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

--
-- Name: purges_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.purges_id_seq OWNED BY public.purges.id;

--
-- Name: rate_limit_hits; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.rate_limit_hits (
    id bigint NOT NULL,
    key text NOT NULL,
    at timestamp with time zone NOT NULL,
    hits integer NOT NULL,
    CONSTRAINT rate_limit_hits_hits_check CHECK ((hits > 0))
);

--
-- Name: rate_limit_hits_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

ALTER TABLE public.rate_limit_hits ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.rate_limit_hits_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

--
-- Name: rate_limits; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.rate_limits (
    key text NOT NULL,
    window_start timestamp with time zone NOT NULL,
    hits integer NOT NULL
);

--
-- Name: refusals_given_up; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.refusals_given_up (
    outbox_id bigint NOT NULL,
    list_id bigint,
    member_id bigint,
    recipient text NOT NULL,
    stage text NOT NULL,
    follow_up text NOT NULL,
    error text NOT NULL,
    tries integer NOT NULL,
    given_up_at timestamp with time zone DEFAULT now() NOT NULL
);

--
-- Name: schema_migrations; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.schema_migrations (
    name text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);

--
-- Name: sender_rules; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.sender_rules (
    list_id bigint NOT NULL,
    email text NOT NULL,
    kind text NOT NULL,
    expires_at timestamp with time zone,
    created_by text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT sender_rules_email_check CHECK ((email = lower(email))),
    CONSTRAINT sender_rules_kind_check CHECK ((kind = ANY (ARRAY['allow'::text, 'ban'::text])))
);

--
-- Name: sessions; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.sessions (
    id_hash text NOT NULL,
    account_id bigint NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    last_seen_at timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone NOT NULL,
    ip text,
    user_agent text,
    login_email text
);

--
-- Name: size_refusals; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.size_refusals (
    list_id bigint NOT NULL,
    message_id bigint NOT NULL,
    response text NOT NULL,
    refused_at timestamp with time zone DEFAULT now() NOT NULL
);

--
-- Name: subscription_requests; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.subscription_requests (
    id bigint NOT NULL,
    list_id bigint NOT NULL,
    email text NOT NULL,
    name text,
    mode text DEFAULT 'each'::text NOT NULL,
    action text NOT NULL,
    token_hash text NOT NULL,
    via text NOT NULL,
    state text DEFAULT 'confirm'::text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone NOT NULL,
    confirmed_at timestamp with time zone,
    decided_at timestamp with time zone,
    decided_by text,
    CONSTRAINT subscription_requests_action_check CHECK ((action = ANY (ARRAY['subscribe'::text, 'unsubscribe'::text]))),
    CONSTRAINT subscription_requests_email_check CHECK ((email = lower(email))),
    CONSTRAINT subscription_requests_mode_check CHECK ((mode = ANY (ARRAY['each'::text, 'digest'::text, 'nomail'::text]))),
    CONSTRAINT subscription_requests_state_check CHECK ((state = ANY (ARRAY['confirm'::text, 'approval'::text, 'done'::text, 'rejected'::text]))),
    CONSTRAINT subscription_requests_via_check CHECK ((via = ANY (ARRAY['web'::text, 'mail'::text, 'admin'::text])))
);

--
-- Name: subscription_requests_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.subscription_requests_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

--
-- Name: subscription_requests_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.subscription_requests_id_seq OWNED BY public.subscription_requests.id;

--
-- Name: thread_ids; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.thread_ids
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

--
-- Name: thread_moves; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.thread_moves (
    old_thread bigint NOT NULL,
    new_thread bigint NOT NULL,
    moved_at timestamp with time zone DEFAULT now() NOT NULL,
    lists bigint[]
);

--
-- Name: unresolved_refs; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.unresolved_refs (
    message_id bigint NOT NULL,
    ref text NOT NULL,
    priority integer NOT NULL
);

--
-- Name: accounts id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.accounts ALTER COLUMN id SET DEFAULT nextval('public.accounts_id_seq'::regclass);

--
-- Name: api_tokens id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.api_tokens ALTER COLUMN id SET DEFAULT nextval('public.api_tokens_id_seq'::regclass);

--
-- Name: archive_imports id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.archive_imports ALTER COLUMN id SET DEFAULT nextval('public.archive_imports_id_seq'::regclass);

--
-- Name: audit_log id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.audit_log ALTER COLUMN id SET DEFAULT nextval('public.audit_log_id_seq'::regclass);

--
-- Name: bounces id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.bounces ALTER COLUMN id SET DEFAULT nextval('public.bounces_id_seq'::regclass);

--
-- Name: held_messages id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.held_messages ALTER COLUMN id SET DEFAULT nextval('public.held_messages_id_seq'::regclass);

--
-- Name: ingest_errors id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.ingest_errors ALTER COLUMN id SET DEFAULT nextval('public.ingest_errors_id_seq'::regclass);

--
-- Name: lists id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.lists ALTER COLUMN id SET DEFAULT nextval('public.lists_id_seq'::regclass);

--
-- Name: members id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.members ALTER COLUMN id SET DEFAULT nextval('public.members_id_seq'::regclass);

--
-- Name: messages id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.messages ALTER COLUMN id SET DEFAULT nextval('public.messages_id_seq'::regclass);

--
-- Name: outbound_mail id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.outbound_mail ALTER COLUMN id SET DEFAULT nextval('public.outbound_mail_id_seq'::regclass);

--
-- Name: outbox id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.outbox ALTER COLUMN id SET DEFAULT nextval('public.outbox_id_seq'::regclass);

--
-- Name: purges id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.purges ALTER COLUMN id SET DEFAULT nextval('public.purges_id_seq'::regclass);

--
-- Name: subscription_requests id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.subscription_requests ALTER COLUMN id SET DEFAULT nextval('public.subscription_requests_id_seq'::regclass);

--
-- Name: account_addresses account_addresses_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.account_addresses
    ADD CONSTRAINT account_addresses_pkey PRIMARY KEY (account_id, email);

--
-- Name: accounts accounts_email_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.accounts
    ADD CONSTRAINT accounts_email_key UNIQUE (email);

--
-- Name: accounts accounts_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.accounts
    ADD CONSTRAINT accounts_pkey PRIMARY KEY (id);

--
-- Name: address_spellings address_spellings_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.address_spellings
    ADD CONSTRAINT address_spellings_pkey PRIMARY KEY (tbl, email);

--
-- Name: api_tokens api_tokens_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.api_tokens
    ADD CONSTRAINT api_tokens_pkey PRIMARY KEY (id);

--
-- Name: api_tokens api_tokens_token_hash_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.api_tokens
    ADD CONSTRAINT api_tokens_token_hash_key UNIQUE (token_hash);

--
-- Name: archive_import_batches archive_import_batches_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.archive_import_batches
    ADD CONSTRAINT archive_import_batches_pkey PRIMARY KEY (import_id, first_offset, part);

--
-- Name: archive_imports archive_imports_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.archive_imports
    ADD CONSTRAINT archive_imports_pkey PRIMARY KEY (id);

--
-- Name: archive_list_changes archive_list_changes_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.archive_list_changes
    ADD CONSTRAINT archive_list_changes_pkey PRIMARY KEY (list_id);

--
-- Name: audit_log audit_log_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.audit_log
    ADD CONSTRAINT audit_log_pkey PRIMARY KEY (id);

--
-- Name: bounces bounces_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.bounces
    ADD CONSTRAINT bounces_pkey PRIMARY KEY (id);

--
-- Name: chore_runs chore_runs_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chore_runs
    ADD CONSTRAINT chore_runs_pkey PRIMARY KEY (name);

--
-- Name: conversion_skips conversion_skips_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.conversion_skips
    ADD CONSTRAINT conversion_skips_pkey PRIMARY KEY (name, key);

--
-- Name: conversions conversions_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.conversions
    ADD CONSTRAINT conversions_pkey PRIMARY KEY (name);

--
-- Name: delivery_hourly delivery_hourly_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.delivery_hourly
    ADD CONSTRAINT delivery_hourly_pkey PRIMARY KEY (hour);

--
-- Name: delivery_workers delivery_workers_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.delivery_workers
    ADD CONSTRAINT delivery_workers_pkey PRIMARY KEY (name);

--
-- Name: digest_items digest_items_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.digest_items
    ADD CONSTRAINT digest_items_pkey PRIMARY KEY (list_id, message_id);

--
-- Name: dmarc_policies dmarc_policies_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.dmarc_policies
    ADD CONSTRAINT dmarc_policies_pkey PRIMARY KEY (domain);

--
-- Name: held_messages held_messages_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.held_messages
    ADD CONSTRAINT held_messages_pkey PRIMARY KEY (id);

--
-- Name: ingest_errors ingest_errors_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.ingest_errors
    ADD CONSTRAINT ingest_errors_pkey PRIMARY KEY (id);

--
-- Name: list_messages list_messages_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.list_messages
    ADD CONSTRAINT list_messages_pkey PRIMARY KEY (list_id, message_id) INCLUDE (hidden_at);

--
-- Name: list_roles list_roles_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.list_roles
    ADD CONSTRAINT list_roles_pkey PRIMARY KEY (list_id, email, role);

--
-- Name: lists lists_address_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.lists
    ADD CONSTRAINT lists_address_key UNIQUE (address);

--
-- Name: lists lists_local_part_domain_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.lists
    ADD CONSTRAINT lists_local_part_domain_key UNIQUE (local_part, domain);

--
-- Name: lists lists_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.lists
    ADD CONSTRAINT lists_pkey PRIMARY KEY (id);

--
-- Name: login_tokens login_tokens_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.login_tokens
    ADD CONSTRAINT login_tokens_pkey PRIMARY KEY (token_hash);

--
-- Name: member_token_aliases member_token_aliases_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.member_token_aliases
    ADD CONSTRAINT member_token_aliases_pkey PRIMARY KEY (token);

--
-- Name: members members_list_id_email_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.members
    ADD CONSTRAINT members_list_id_email_key UNIQUE (list_id, email);

--
-- Name: members members_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.members
    ADD CONSTRAINT members_pkey PRIMARY KEY (id);

--
-- Name: members members_token_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.members
    ADD CONSTRAINT members_token_key UNIQUE (token);

--
-- Name: message_digests message_digests_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.message_digests
    ADD CONSTRAINT message_digests_pkey PRIMARY KEY (message_id);

--
-- Name: messages messages_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.messages
    ADD CONSTRAINT messages_pkey PRIMARY KEY (id);

--
-- Name: outbound_mail outbound_mail_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.outbound_mail
    ADD CONSTRAINT outbound_mail_pkey PRIMARY KEY (id);

--
-- Name: outbox outbox_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.outbox
    ADD CONSTRAINT outbox_pkey PRIMARY KEY (id);

--
-- Name: purge_switch purge_switch_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.purge_switch
    ADD CONSTRAINT purge_switch_pkey PRIMARY KEY (only_row);

--
-- Name: purges purges_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.purges
    ADD CONSTRAINT purges_pkey PRIMARY KEY (id);

--
-- Name: rate_limit_hits rate_limit_hits_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.rate_limit_hits
    ADD CONSTRAINT rate_limit_hits_pkey PRIMARY KEY (id);

--
-- Name: rate_limits rate_limits_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.rate_limits
    ADD CONSTRAINT rate_limits_pkey PRIMARY KEY (key);

--
-- Name: refusals_given_up refusals_given_up_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.refusals_given_up
    ADD CONSTRAINT refusals_given_up_pkey PRIMARY KEY (outbox_id);

--
-- Name: schema_migrations schema_migrations_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (name);

--
-- Name: sender_rules sender_rules_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.sender_rules
    ADD CONSTRAINT sender_rules_pkey PRIMARY KEY (list_id, email);

--
-- Name: sessions sessions_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.sessions
    ADD CONSTRAINT sessions_pkey PRIMARY KEY (id_hash);

--
-- Name: size_refusals size_refusals_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.size_refusals
    ADD CONSTRAINT size_refusals_pkey PRIMARY KEY (list_id, message_id);

--
-- Name: subscription_requests subscription_requests_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.subscription_requests
    ADD CONSTRAINT subscription_requests_pkey PRIMARY KEY (id);

--
-- Name: subscription_requests subscription_requests_token_hash_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.subscription_requests
    ADD CONSTRAINT subscription_requests_token_hash_key UNIQUE (token_hash);

--
-- Name: thread_moves thread_moves_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.thread_moves
    ADD CONSTRAINT thread_moves_pkey PRIMARY KEY (old_thread);

--
-- Name: unresolved_refs unresolved_refs_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.unresolved_refs
    ADD CONSTRAINT unresolved_refs_pkey PRIMARY KEY (message_id, ref);

--
-- Name: account_addresses_verified_email; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX account_addresses_verified_email ON public.account_addresses USING btree (email) WHERE (verified_at IS NOT NULL);

--
-- Name: archive_imports_fingerprint; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX archive_imports_fingerprint ON public.archive_imports USING btree (list_id, fingerprint, id DESC);

--
-- Name: audit_log_actor; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX audit_log_actor ON public.audit_log USING btree (actor, id DESC);

--
-- Name: audit_log_list; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX audit_log_list ON public.audit_log USING btree (list_id, id DESC);

--
-- Name: bounces_member; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX bounces_member ON public.bounces USING btree (member_id, received_at DESC);

--
-- Name: bounces_received; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX bounces_received ON public.bounces USING btree (received_at);

--
-- Name: held_messages_decided; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX held_messages_decided ON public.held_messages USING btree (decided_at) WHERE (state <> 'held'::text);

--
-- Name: held_messages_mail_token; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX held_messages_mail_token ON public.held_messages USING btree (mail_token_hash) WHERE (mail_token_hash IS NOT NULL);

--
-- Name: held_messages_pending; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX held_messages_pending ON public.held_messages USING btree (list_id, received_at) WHERE (state = 'held'::text);

--
-- Name: held_messages_pending_once; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX held_messages_pending_once ON public.held_messages USING btree (list_id, message_id) WHERE (state = 'held'::text);

--
-- Name: held_messages_waiting; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX held_messages_waiting ON public.held_messages USING btree (received_at) WHERE (state = 'held'::text);

--
-- Name: ingest_errors_received; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ingest_errors_received ON public.ingest_errors USING btree (received_at);

--
-- Name: list_messages_by_date; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX list_messages_by_date ON public.list_messages USING btree (list_id, date DESC);

--
-- Name: list_messages_by_message; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX list_messages_by_message ON public.list_messages USING btree (message_id) INCLUDE (list_id, hidden_at);

--
-- Name: list_messages_hidden; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX list_messages_hidden ON public.list_messages USING btree (list_id) WHERE (hidden_at IS NOT NULL);

--
-- Name: list_messages_visibility_changed; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX list_messages_visibility_changed ON public.list_messages USING btree (list_id, visibility_changed_at) WHERE (visibility_changed_at IS NOT NULL);

--
-- Name: lists_local_part; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX lists_local_part ON public.lists USING btree (local_part);

--
-- Name: login_tokens_email; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX login_tokens_email ON public.login_tokens USING btree (email, created_at);

--
-- Name: member_token_aliases_member; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX member_token_aliases_member ON public.member_token_aliases USING btree (member_id);

--
-- Name: members_bounce_disabled; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX members_bounce_disabled ON public.members USING btree (bounce_warned_at) WHERE ((status = 'disabled'::text) AND (bounce_warned_at IS NOT NULL));

--
-- Name: members_bounce_probe_due; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX members_bounce_probe_due ON public.members USING btree (bounce_probe_sent_at) WHERE (bounce_probe_sent_at IS NOT NULL);

--
-- Name: members_bounce_probe_token; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX members_bounce_probe_token ON public.members USING btree (bounce_probe_token) WHERE (bounce_probe_token IS NOT NULL);

--
-- Name: members_digest_readers; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX members_digest_readers ON public.members USING btree (list_id) WHERE ((mode = 'digest'::text) AND (status = 'active'::text));

--
-- Name: members_email; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX members_email ON public.members USING btree (email);

--
-- Name: members_nomail_until; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX members_nomail_until ON public.members USING btree (nomail_until) WHERE (nomail_until IS NOT NULL);

--
-- Name: messages_attachment_text_unread; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX messages_attachment_text_unread ON public.messages USING btree (id) WHERE (has_attachments AND (attachment_text IS NULL));

--
-- Name: messages_author_trgm; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX messages_author_trgm ON public.messages USING gin ((((from_name || '
'::text) || from_email)) public.gin_trgm_ops);

--
-- Name: messages_bidi_fields; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX messages_bidi_fields ON public.messages USING btree (id) WHERE ((subject ~ '[‪-‮⁦-⁩]'::text) OR (from_name ~ '[‪-‮⁦-⁩]'::text));

--
-- Name: messages_by_thread; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX messages_by_thread ON public.messages USING btree (thread_id, date, id) INCLUDE (parent_id);

--
-- Name: messages_date; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX messages_date ON public.messages USING btree (date);

--
-- Name: messages_from_date; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX messages_from_date ON public.messages USING btree (from_email, date);

--
-- Name: messages_message_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX messages_message_id ON public.messages USING btree (message_id);

--
-- Name: messages_tsv; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX messages_tsv ON public.messages USING gin (tsv);

--
-- Name: outbox_bounce_pending; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX outbox_bounce_pending ON public.outbox USING btree (id) WHERE (bounce_stage IS NOT NULL);

--
-- Name: outbox_bounce_pending_tries; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX outbox_bounce_pending_tries ON public.outbox USING btree (bounce_tries, id) WHERE (bounce_stage IS NOT NULL);

--
-- Name: outbox_due; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX outbox_due ON public.outbox USING btree (run_at) WHERE (state = 'queued'::text);

--
-- Name: outbox_finished_all; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX outbox_finished_all ON public.outbox USING btree (COALESCE(sent_at, created_at)) WHERE (state = ANY (ARRAY['sent'::text, 'failed'::text, 'cancelled'::text]));

--
-- Name: outbox_list; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX outbox_list ON public.outbox USING btree (list_id) WHERE (message_id IS NULL);

--
-- Name: outbox_mail; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX outbox_mail ON public.outbox USING btree (mail_id) WHERE (mail_id IS NOT NULL);

--
-- Name: outbox_post_once; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX outbox_post_once ON public.outbox USING btree (list_id, message_id, recipient) WHERE (message_id IS NOT NULL);

--
-- Name: outbox_sending; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX outbox_sending ON public.outbox USING btree (locked_by) WHERE (state = 'sending'::text);

--
-- Name: purges_due; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX purges_due ON public.purges USING btree (run_at);

--
-- Name: purges_key; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX purges_key ON public.purges USING btree (key);

--
-- Name: rate_limit_hits_at; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX rate_limit_hits_at ON public.rate_limit_hits USING btree (at);

--
-- Name: rate_limit_hits_key_at; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX rate_limit_hits_key_at ON public.rate_limit_hits USING btree (key, at);

--
-- Name: rate_limits_window; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX rate_limits_window ON public.rate_limits USING btree (window_start);

--
-- Name: sessions_account; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX sessions_account ON public.sessions USING btree (account_id);

--
-- Name: sessions_expires; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX sessions_expires ON public.sessions USING btree (expires_at);

--
-- Name: subscription_requests_approval; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX subscription_requests_approval ON public.subscription_requests USING btree (list_id, created_at) WHERE (state = 'approval'::text);

--
-- Name: subscription_requests_expires; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX subscription_requests_expires ON public.subscription_requests USING btree (expires_at) WHERE (state = 'confirm'::text);

--
-- Name: unresolved_refs_ref; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX unresolved_refs_ref ON public.unresolved_refs USING btree (ref);

--
-- Name: account_addresses account_addresses_idn_address; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER account_addresses_idn_address AFTER INSERT OR UPDATE OF email ON public.account_addresses FOR EACH ROW WHEN ((new.email ~ '[@.]xn--[^@]*$'::text)) EXECUTE FUNCTION public.idn_address_written();

--
-- Name: accounts accounts_idn_address; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER accounts_idn_address AFTER INSERT OR UPDATE OF email ON public.accounts FOR EACH ROW WHEN ((new.email ~ '[@.]xn--[^@]*$'::text)) EXECUTE FUNCTION public.idn_address_written();

--
-- Name: accounts accounts_primary_is_verified; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER accounts_primary_is_verified AFTER INSERT OR UPDATE OF email ON public.accounts FOR EACH ROW EXECUTE FUNCTION public.accounts_primary_is_verified();

--
-- Name: api_tokens api_tokens_maker; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER api_tokens_maker BEFORE INSERT ON public.api_tokens FOR EACH ROW WHEN (((new.created_by_account IS NULL) AND (new.created_by !~~ 'cli:%'::text))) EXECUTE FUNCTION public.api_token_maker();

--
-- Name: list_messages list_messages_archive_deleted; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER list_messages_archive_deleted AFTER DELETE ON public.list_messages REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION public.archive_list_messages_deleted();

--
-- Name: list_messages list_messages_archive_truncated; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER list_messages_archive_truncated AFTER TRUNCATE ON public.list_messages FOR EACH STATEMENT EXECUTE FUNCTION public.archive_list_messages_truncated();

--
-- Name: list_messages list_messages_changed; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER list_messages_changed AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON public.list_messages FOR EACH STATEMENT EXECUTE FUNCTION public.count_archive_change();

--
-- Name: list_messages list_messages_purge_delete; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER list_messages_purge_delete AFTER DELETE ON public.list_messages REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT WHEN (public.purging()) EXECUTE FUNCTION public.purge_list_messages_deleted();

--
-- Name: list_messages list_messages_purge_insert; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER list_messages_purge_insert AFTER INSERT ON public.list_messages REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT WHEN (public.purging()) EXECUTE FUNCTION public.purge_list_messages_inserted();

--
-- Name: list_messages list_messages_purge_update; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER list_messages_purge_update AFTER UPDATE ON public.list_messages REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT WHEN (public.purging()) EXECUTE FUNCTION public.purge_list_messages_updated();

--
-- Name: list_roles list_roles_idn_address; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER list_roles_idn_address AFTER INSERT OR UPDATE OF email ON public.list_roles FOR EACH ROW WHEN ((new.email ~ '[@.]xn--[^@]*$'::text)) EXECUTE FUNCTION public.idn_address_written();

--
-- Name: lists lists_archive_deleted; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER lists_archive_deleted AFTER DELETE ON public.lists FOR EACH ROW EXECUTE FUNCTION public.archive_list_updated();

--
-- Name: lists lists_archive_inserted; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER lists_archive_inserted AFTER INSERT ON public.lists FOR EACH ROW EXECUTE FUNCTION public.archive_list_updated();

--
-- Name: lists lists_archive_updated; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER lists_archive_updated AFTER UPDATE ON public.lists FOR EACH ROW WHEN (((old.address IS DISTINCT FROM new.address) OR (old.local_part IS DISTINCT FROM new.local_part) OR (old.domain IS DISTINCT FROM new.domain) OR (old.name IS DISTINCT FROM new.name) OR (old.description IS DISTINCT FROM new.description) OR (old.archive IS DISTINCT FROM new.archive))) EXECUTE FUNCTION public.archive_list_updated();

--
-- Name: lists lists_changed; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER lists_changed AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON public.lists FOR EACH STATEMENT EXECUTE FUNCTION public.notify_change('listkeeper_lists');

--
-- Name: lists lists_changed_archive; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER lists_changed_archive AFTER INSERT OR DELETE OR TRUNCATE ON public.lists FOR EACH STATEMENT EXECUTE FUNCTION public.count_archive_change();

--
-- Name: lists lists_idn_address; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER lists_idn_address AFTER INSERT OR UPDATE OF reply_to_address ON public.lists FOR EACH ROW WHEN ((new.reply_to_address ~ '[@.]xn--[^@]*$'::text)) EXECUTE FUNCTION public.idn_address_written();

--
-- Name: lists lists_purge_delete; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER lists_purge_delete AFTER DELETE ON public.lists REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT WHEN (public.purging()) EXECUTE FUNCTION public.purge_lists_deleted();

--
-- Name: lists lists_purge_insert; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER lists_purge_insert AFTER INSERT ON public.lists REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT WHEN (public.purging()) EXECUTE FUNCTION public.purge_lists_inserted();

--
-- Name: lists lists_purge_update; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER lists_purge_update AFTER UPDATE ON public.lists REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT WHEN (public.purging()) EXECUTE FUNCTION public.purge_lists_updated();

--
-- Name: lists lists_shown_changed_archive; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER lists_shown_changed_archive AFTER UPDATE ON public.lists FOR EACH ROW WHEN (((old.id IS DISTINCT FROM new.id) OR (old.address IS DISTINCT FROM new.address) OR (old.local_part IS DISTINCT FROM new.local_part) OR (old.domain IS DISTINCT FROM new.domain) OR (old.name IS DISTINCT FROM new.name) OR (old.description IS DISTINCT FROM new.description) OR (old.archive IS DISTINCT FROM new.archive) OR (old.roster_visibility IS DISTINCT FROM new.roster_visibility) OR (old.created_at IS DISTINCT FROM new.created_at))) EXECUTE FUNCTION public.count_archive_change();

--
-- Name: members members_end_vacation; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER members_end_vacation BEFORE UPDATE OF mode, status ON public.members FOR EACH ROW EXECUTE FUNCTION public.members_end_vacation_on_mode_change();

--
-- Name: members members_idn_address; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER members_idn_address AFTER INSERT OR UPDATE OF email ON public.members FOR EACH ROW WHEN ((new.email ~ '[@.]xn--[^@]*$'::text)) EXECUTE FUNCTION public.idn_address_written();

--
-- Name: messages messages_changed; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER messages_changed AFTER DELETE OR UPDATE OR TRUNCATE ON public.messages FOR EACH STATEMENT EXECUTE FUNCTION public.count_archive_change();

--
-- Name: messages messages_digests; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER messages_digests AFTER INSERT ON public.messages REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION public.record_message_digests();

--
-- Name: messages messages_purge_delete; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER messages_purge_delete AFTER DELETE ON public.messages REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT WHEN (public.purging()) EXECUTE FUNCTION public.purge_messages_deleted();

--
-- Name: messages messages_purge_update; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER messages_purge_update AFTER UPDATE ON public.messages REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT WHEN (public.purging()) EXECUTE FUNCTION public.purge_messages_updated();

--
-- Name: messages messages_search_vector; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER messages_search_vector BEFORE INSERT OR UPDATE OF subject, from_name, body, attachment_text ON public.messages FOR EACH ROW EXECUTE FUNCTION public.messages_search_vector();

--
-- Name: messages messages_thread_moves; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER messages_thread_moves AFTER UPDATE ON public.messages REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION public.record_thread_moves();

--
-- Name: lists outbox_forget_list; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER outbox_forget_list AFTER DELETE ON public.lists FOR EACH ROW EXECUTE FUNCTION public.outbox_forget_list();

--
-- Name: sender_rules sender_rules_idn_address; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER sender_rules_idn_address AFTER INSERT OR UPDATE OF email ON public.sender_rules FOR EACH ROW WHEN ((new.email ~ '[@.]xn--[^@]*$'::text)) EXECUTE FUNCTION public.idn_address_written();

--
-- Name: subscription_requests subscription_requests_idn_address; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER subscription_requests_idn_address AFTER INSERT OR UPDATE OF email ON public.subscription_requests FOR EACH ROW WHEN ((new.email ~ '[@.]xn--[^@]*$'::text)) EXECUTE FUNCTION public.idn_address_written();

--
-- Name: account_addresses account_addresses_account_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.account_addresses
    ADD CONSTRAINT account_addresses_account_id_fkey FOREIGN KEY (account_id) REFERENCES public.accounts(id) ON DELETE CASCADE;

--
-- Name: archive_import_batches archive_import_batches_import_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.archive_import_batches
    ADD CONSTRAINT archive_import_batches_import_id_fkey FOREIGN KEY (import_id) REFERENCES public.archive_imports(id) ON DELETE CASCADE;

--
-- Name: archive_imports archive_imports_list_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.archive_imports
    ADD CONSTRAINT archive_imports_list_id_fkey FOREIGN KEY (list_id) REFERENCES public.lists(id) ON DELETE CASCADE;

--
-- Name: audit_log audit_log_list_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.audit_log
    ADD CONSTRAINT audit_log_list_id_fkey FOREIGN KEY (list_id) REFERENCES public.lists(id) ON DELETE SET NULL;

--
-- Name: bounces bounces_list_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.bounces
    ADD CONSTRAINT bounces_list_id_fkey FOREIGN KEY (list_id) REFERENCES public.lists(id) ON DELETE CASCADE;

--
-- Name: bounces bounces_member_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.bounces
    ADD CONSTRAINT bounces_member_id_fkey FOREIGN KEY (member_id) REFERENCES public.members(id) ON DELETE CASCADE;

--
-- Name: conversion_skips conversion_skips_name_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.conversion_skips
    ADD CONSTRAINT conversion_skips_name_fkey FOREIGN KEY (name) REFERENCES public.conversions(name) ON DELETE CASCADE;

--
-- Name: digest_items digest_items_list_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.digest_items
    ADD CONSTRAINT digest_items_list_id_fkey FOREIGN KEY (list_id) REFERENCES public.lists(id) ON DELETE CASCADE;

--
-- Name: digest_items digest_items_message_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.digest_items
    ADD CONSTRAINT digest_items_message_id_fkey FOREIGN KEY (message_id) REFERENCES public.messages(id) ON DELETE CASCADE;

--
-- Name: held_messages held_messages_list_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.held_messages
    ADD CONSTRAINT held_messages_list_id_fkey FOREIGN KEY (list_id) REFERENCES public.lists(id) ON DELETE CASCADE;

--
-- Name: ingest_errors ingest_errors_list_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.ingest_errors
    ADD CONSTRAINT ingest_errors_list_id_fkey FOREIGN KEY (list_id) REFERENCES public.lists(id) ON DELETE SET NULL;

--
-- Name: list_messages list_messages_list_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.list_messages
    ADD CONSTRAINT list_messages_list_id_fkey FOREIGN KEY (list_id) REFERENCES public.lists(id) ON DELETE CASCADE;

--
-- Name: list_messages list_messages_message_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.list_messages
    ADD CONSTRAINT list_messages_message_id_fkey FOREIGN KEY (message_id) REFERENCES public.messages(id) ON DELETE CASCADE;

--
-- Name: list_roles list_roles_list_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.list_roles
    ADD CONSTRAINT list_roles_list_id_fkey FOREIGN KEY (list_id) REFERENCES public.lists(id) ON DELETE CASCADE;

--
-- Name: login_tokens login_tokens_account_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.login_tokens
    ADD CONSTRAINT login_tokens_account_id_fkey FOREIGN KEY (account_id) REFERENCES public.accounts(id) ON DELETE CASCADE;

--
-- Name: member_token_aliases member_token_aliases_member_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.member_token_aliases
    ADD CONSTRAINT member_token_aliases_member_id_fkey FOREIGN KEY (member_id) REFERENCES public.members(id) ON DELETE CASCADE;

--
-- Name: members members_list_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.members
    ADD CONSTRAINT members_list_id_fkey FOREIGN KEY (list_id) REFERENCES public.lists(id) ON DELETE CASCADE;

--
-- Name: message_digests message_digests_message_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.message_digests
    ADD CONSTRAINT message_digests_message_id_fkey FOREIGN KEY (message_id) REFERENCES public.messages(id) ON DELETE CASCADE;

--
-- Name: messages messages_parent_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.messages
    ADD CONSTRAINT messages_parent_id_fkey FOREIGN KEY (parent_id) REFERENCES public.messages(id) ON DELETE SET NULL;

--
-- Name: outbox outbox_mail_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.outbox
    ADD CONSTRAINT outbox_mail_id_fkey FOREIGN KEY (mail_id) REFERENCES public.outbound_mail(id) ON DELETE CASCADE;

--
-- Name: sender_rules sender_rules_list_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.sender_rules
    ADD CONSTRAINT sender_rules_list_id_fkey FOREIGN KEY (list_id) REFERENCES public.lists(id) ON DELETE CASCADE;

--
-- Name: sessions sessions_account_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.sessions
    ADD CONSTRAINT sessions_account_id_fkey FOREIGN KEY (account_id) REFERENCES public.accounts(id) ON DELETE CASCADE;

--
-- Name: size_refusals size_refusals_list_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.size_refusals
    ADD CONSTRAINT size_refusals_list_id_fkey FOREIGN KEY (list_id) REFERENCES public.lists(id) ON DELETE CASCADE;

--
-- Name: size_refusals size_refusals_message_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.size_refusals
    ADD CONSTRAINT size_refusals_message_id_fkey FOREIGN KEY (message_id) REFERENCES public.messages(id) ON DELETE CASCADE;

--
-- Name: subscription_requests subscription_requests_list_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.subscription_requests
    ADD CONSTRAINT subscription_requests_list_id_fkey FOREIGN KEY (list_id) REFERENCES public.lists(id) ON DELETE CASCADE;

--
-- Name: unresolved_refs unresolved_refs_message_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.unresolved_refs
    ADD CONSTRAINT unresolved_refs_message_id_fkey FOREIGN KEY (message_id) REFERENCES public.messages(id) ON DELETE CASCADE;

--
-- PostgreSQL database dump complete
--
