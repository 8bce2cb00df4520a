/*
 * An account's password saved, from its page or by a reset link: with the account's other sessions
 * ended, its audit entry, and a notice to its primary address, in one transaction. A password set
 * from a stolen session (or reset by a link mailed to an address a thief added) is the one change
 * that keeps them in for good; the notice lets the owner see it at once, as the address changes do
 * (core/account-addresses.ts).
 */

import type pg from 'pg';
import { replacePasswordHash, setPasswordHash } from '../db/accounts.ts';
import { recordAudit } from '../db/audit.ts';
import { withTransaction } from '../db/pool.ts';
import { deleteAccountSessions } from '../db/sessions.ts';
import { Conflict } from '../errors.ts';
import { absoluteUrl, passwordResetRequestUrl } from '../mail/urls.ts';
import { noticeTime, tokensAdvice, type AccountRef, type NoticeSettings } from './account-addresses.ts';
import { sendNotice } from './notices.ts';

export type PasswordChange = 'set' | 'changed' | 'reset';

/**
 * Saves the password hash; ends every session of the account but `keepSession` (the hash of the
 * one saving it; null: all); tells the primary address (`who.email`) what happened and when.
 * `replacing`: the hash the change was checked against (the current password typed, or none set);
 * a Conflict when it is no longer the account's. Two sessions changing the password at once were
 * both told "saved", and each logged the other out: the one whose password was not in force too.
 */
export async function savePassword(pool: pg.Pool, who: AccountRef, hash: string, opts: { change: PasswordChange; keepSession: string | null; replacing?: string | null; settings: NoticeSettings }): Promise<void> {
  const { settings } = opts;
  await withTransaction(pool, async (tx) => {
    if (opts.replacing === undefined) await setPasswordHash(tx, who.accountId, hash);
    else if (!(await replacePasswordHash(tx, who.accountId, hash, opts.replacing))) {
      throw new Conflict('The password of this account was changed meanwhile (in another session?); yours was not saved. Log in with the new one, or ask for a reset link.', 'password_changed');
    }
    await deleteAccountSessions(tx, who.accountId, opts.keepSession);
    await recordAudit(tx, { actor: who.email, action: `account.password_${opts.change}`, target: who.email });
    const what = opts.change === 'set' ? 'A password was set for' : opts.change === 'reset' ? 'The password was reset, by a link mailed to one of its addresses, for' : 'The password was changed for';
    await sendNotice(tx, {
      site: settings,
      to: who.email,
      subject: opts.change === 'set' ? 'A password was set for your account' : 'Your password was changed',
      text: `${what} your account on ${settings.publicUrl} (${who.email}, this address) on ${noticeTime(new Date())}. Its other sessions were logged out.\n\n`
        + `If you made this change, there is nothing more to do.\n\n`
        + `If you did not, someone else may be using your account: ask for a new password with this address (${absoluteUrl(settings.publicUrl, passwordResetRequestUrl())}), `
        + `then, on your account page, remove the addresses you do not know and choose "Log out everywhere else". `
        + (await tokensAdvice(tx, who.accountId, settings))
        + `If you cannot, ask the administrators of ${settings.publicUrl} for help.\n`,
    });
  });
}
