-- A vacation: `nomail` until a date, after which the delivery worker's maintenance puts the member
-- back on the mode they had before (src/core/vacation.ts). Any other change of mode ends the
-- vacation, whoever makes it: the trigger clears both columns so no writer has to remember to.

alter table members
  add column nomail_until timestamptz,
  add column mode_before_nomail text check (mode_before_nomail in ('each', 'digest')),
  add constraint members_nomail_until_check check (nomail_until is null or mode = 'nomail');

-- The maintenance pass looks only at members with a date set: a handful, whatever the list sizes.
create index members_nomail_until on members (nomail_until) where nomail_until is not null;

create function members_end_vacation_on_mode_change() returns trigger language plpgsql as $$
begin
  if new.mode <> 'nomail' then
    new.nomail_until := null;
    new.mode_before_nomail := null;
  end if;
  return new;
end $$;

create trigger members_end_vacation before update of mode on members
  for each row execute function members_end_vacation_on_mode_change();
