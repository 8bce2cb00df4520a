-- What a post's arrival checks found (sql/0024: messages.checks) is written by the INSERT that
-- stores the message, instead of an UPDATE right after it: that UPDATE wrote every new row twice
-- and fired the UPDATE triggers of messages (the archive change counter, and the thread-move
-- trigger with its transition tables) on every batch of posts (about a tenth of ingest's rate).
-- archive_message() and accept_post() of sql/0013, with one more parameter, p_checks.

drop function accept_post(bigint, text, bytea, text, text, text, timestamptz, text, text[], text, boolean, boolean, text, text);
drop function archive_message(bigint, text, bytea, text, text, text, timestamptz, text, text[], text, boolean, boolean);

create function archive_message(
  p_list_id bigint, p_message_id text, p_raw bytea, p_subject text, p_from_name text,
  p_from_email text, p_date timestamptz, p_in_reply_to text, p_refs text[], p_body text,
  p_has_attachments boolean, p_exact boolean, p_checks jsonb)
returns table (id bigint, created boolean, added_to_list boolean, thread_id bigint, same_content boolean)
language plpgsql set plan_cache_mode = force_generic_plan as $$
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
     order by u.o, (select false from list_messages lm where lm.list_id = p_list_id and lm.message_id = m.id limit 1) nulls last, m.id
     limit 1;
  end if;
  if v_parent is null then
    v_thread := nextval('thread_ids');
  end if;

  insert into messages (message_id, raw, size, subject, from_name, from_email, date, in_reply_to,
                        refs, body, has_attachments, thread_id, parent_id, checks)
  values (p_message_id, p_raw, length(p_raw), p_subject, p_from_name, p_from_email, p_date,
          p_in_reply_to, p_refs, p_body, p_has_attachments, v_thread, v_parent, p_checks)
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
              where u.ref = p_message_id loop
      update messages set parent_id = v_id where messages.id = r.child;
      delete from unresolved_refs where message_id = r.child and priority >= r.priority;
      update messages set thread_id = v_thread where messages.thread_id = r.child_thread and r.child_thread <> v_thread;
    end loop;
  end if;

  insert into list_messages (list_id, message_id, date) values (p_list_id, v_id, p_date);
  id := v_id; created := true; added_to_list := true; thread_id := v_thread; same_content := true;
  return next;
end $$;

create function accept_post(
  p_list_id bigint, p_message_id text, p_raw bytea, p_subject text, p_from_name text,
  p_from_email text, p_date timestamptz, p_in_reply_to text, p_refs text[], p_body text,
  p_has_attachments boolean, p_exact boolean, p_bounce_prefix text, p_bounce_domain text, p_checks jsonb)
returns table (id bigint, created boolean, added_to_list boolean, thread_id bigint, same_content boolean, copies integer)
language plpgsql set plan_cache_mode = force_generic_plan as $$
declare
  a record;
  v_copies integer := 0;
begin
  select * into a from archive_message(p_list_id, p_message_id, p_raw, p_subject, p_from_name, p_from_email,
                                       p_date, p_in_reply_to, p_refs, p_body, p_has_attachments, p_exact, p_checks);
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
