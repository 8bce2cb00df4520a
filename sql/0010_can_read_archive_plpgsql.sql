-- can_read_archive() (sql/0004) in PL/pgSQL, same answers. As a SQL function with EXISTS it was
-- never inlined, so every query calling it parsed and planned the function's body again at each
-- execution: a fifth of PostgreSQL's time on a message page. PL/pgSQL keeps its plans for the
-- session, and a public archive answers before any query runs.
create or replace function can_read_archive(p_list_id bigint, p_archive text, p_email text, p_site_admin boolean)
returns boolean language plpgsql stable as $$
begin
  if p_archive = 'public' or p_site_admin then
    return true;
  end if;
  if p_email is null then
    return false;
  end if;
  return exists (select 1 from members m where m.list_id = p_list_id and m.email = lower(p_email) and m.status = 'active')
      or exists (select 1 from list_roles r where r.list_id = p_list_id and r.email = lower(p_email));
end $$;
