-- A list's Reply-To address (lists.reply_to_address) is one spelling per mailbox too. Every way of
-- setting it (the panel, `list set`, the REST API, a Mailman import) stores what normalizeEmail
-- gives, the domain in U-labels, since sql/0074; a value stored in A-labels before
-- (help@xn--bcher-kva.example) is respelled by the address-spellings conversion job
-- (src/core/conversions/address-spellings.ts), which now looks in lists as well. A copy writes the
-- address's domain in A-labels again (src/mail/list-copy.ts), so its Reply-To stays ASCII.
--
-- Where the job has finished, it is set going again for these rows. A previous release running
-- beside this one (a rolling upgrade) may still store such a spelling: that write reopens it, as
-- writes to the other tables do (sql/0074). A later release drops the trigger with the others.
create trigger lists_idn_address after insert or update of reply_to_address on lists
  for each row when (new.reply_to_address ~ '[@.]xn--[^@]*$') execute function idn_address_written();

update conversions set done_at = null where name = 'address-spellings' and done_at is not null;
