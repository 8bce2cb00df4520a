-- A pause of delivery (0048) also ends when the member leaves the list, whoever unsubscribes them
-- (the member, an owner, bounces, a -request command): kept on the row, it turned delivery back on
-- for the same address subscribed again later with plain nomail. Same function, one more case;
-- the trigger now fires on a change of status too. The code before this does not rely on the
-- columns outliving an unsubscribe, so it runs unchanged beside this (docs/operations.md).
create or replace function members_end_vacation_on_mode_change() returns trigger language plpgsql as $$
begin
  if new.mode <> 'nomail' or new.status = 'unsubscribed' then
    new.nomail_until := null;
    new.mode_before_nomail := null;
  end if;
  return new;
end $$;

drop trigger members_end_vacation on members;
create trigger members_end_vacation before update of mode, status on members
  for each row execute function members_end_vacation_on_mode_change();
