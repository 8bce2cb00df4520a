-- can_read_archive() (sql/0049), same answers, as one SQL expression that the planner writes into
-- each query that calls it (a SQL function of a single expression is inlined). A public archive,
-- or a site administrator, is then answered by the expression itself: calling the PL/pgSQL
-- function cost 6-16 µs per call even when it answered at once, and the search statement called
-- it for every list (150 lists: 26 µs more per search than with the test written inline). Only a
-- restricted archive calls a function, to look up the reader's membership and roles.
create function archive_reader_belongs(p_list_id bigint, p_emails text[])
returns boolean language plpgsql stable as $$
begin
  if p_emails is null or cardinality(p_emails) = 0 then
    return false;
  end if;
  return exists (select 1 from members m where m.list_id = p_list_id and m.email = any(p_emails) and m.status = 'active')
      or exists (select 1 from list_roles r where r.list_id = p_list_id and r.email = any(p_emails));
end $$;

-- `is true`: never null, as the PL/pgSQL version never returned null.
create or replace function can_read_archive(p_list_id bigint, p_archive text, p_emails text[], p_site_admin boolean)
returns boolean language sql stable as $$
  select (p_archive = 'public') is true or p_site_admin is true or archive_reader_belongs(p_list_id, p_emails)
$$;
