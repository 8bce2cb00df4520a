/*
 * An account's several addresses, as a Mailman 3 user has them: adding one mails a link to it;
 * following that link, logged in as the same account, verifies it; a verified address can become
 * the primary one (accounts.email); any other can be removed. Every change is audited in its
 * transaction under the account's primary address; the address that stops being primary, and a
 * verified address removed, are told by mail in it too. The web asks for a recent login before
 * any of these (web/account/reauthenticate.ts).
 *
 * Adding an address never tells whether another account holds it: the same row, the same mail
 * and the same answer either way. The link is refused when followed if the address is verified
 * by another account by then, and nothing changes. It only works in a session of the account
 * that asked, so a link sent to a stranger's mailbox cannot hand their address to the asker by a
 * careless click.
 */

import type pg from 'pg';
import { hashToken, looksLikeToken } from '../auth/credentials.ts';
import { consumeLoginToken, findAccount, issueLoginToken, peekLoginToken } from '../db/accounts.ts';
import { addPendingAddress, removeAddress, setPrimaryAddress, verifyAddress, type VerifyOutcome } from '../db/account-addresses.ts';
import { recordAudit } from '../db/audit.ts';
import { deleteSessionsLoggedInWith } from '../db/sessions.ts';
import { isSiteListAddress } from '../db/lists.ts';
import { withTransaction, type Queryable } from '../db/pool.ts';
import { allowHit } from '../db/rate-limits.ts';
import { InvalidInput } from '../errors.ts';
import { normalizeEmail } from '../mail/address.ts';
import { absoluteUrl, loginUrl, verifyAddressUrl } from '../mail/urls.ts';
import { sendNotice } from './notices.ts';
import type { CoreSettings } from './settings.ts';
import { mayMailStranger } from './stranger-mail.ts';

/** Who acts: the account, and its primary address (the audit log's actor). */
export interface AccountRef {
  accountId: number;
  email: string;
}

/** Links last a day: the address may be one read less often than the account's usual one. */
export const VERIFY_TTL_SECONDS = 24 * 3600;
/** As for login links: a few mails per address and hour, so the form cannot flood a mailbox. */
const LIMITS = { perAddress: 3, perAccount: 10, windowSeconds: 3600 };

export type AddAddressOutcome = 'sent' | 'yours';

/**
 * Adds an address, unverified, and mails it the link that verifies it. 'yours' when it is already
 * one of the account's verified addresses; otherwise 'sent', whatever else is true of it (over
 * the rate limits nothing is mailed, and the answer does not say so).
 */
export async function addAddress(pool: pg.Pool, who: AccountRef, input: string, settings: NoticeSettings): Promise<{ outcome: AddAddressOutcome; email: string }> {
  const email = normalizeEmail(input);
  if (!email) throw new InvalidInput(`"${input}" is not an e-mail address.`, 'invalid_email');
  if (await isSiteListAddress(pool, email)) throw new InvalidInput(`${email} is an address of a mailing list on this site, not a person's: it cannot be added to an account.`, 'list_address');
  const underLimit = (await allowHit(pool, `maillink:verify:account:${who.accountId}`, LIMITS.perAccount, LIMITS.windowSeconds))
    && (await allowHit(pool, `maillink:verify:${email}`, LIMITS.perAddress, LIMITS.windowSeconds));
  return withTransaction(pool, async (tx) => {
    const row = await addPendingAddress(tx, who.accountId, email);
    if (row?.verified_at) return { outcome: 'yours' as const, email };
    await recordAudit(tx, { actor: who.email, action: 'account.address_add', target: email });
    // Anyone with an account may name any address here: a stranger's mail, in the address's daily budget.
    if (!underLimit || !(await mayMailStranger(tx, email))) return { outcome: 'sent' as const, email };
    const token = await issueLoginToken(tx, email, 'verify', VERIFY_TTL_SECONDS, who.accountId);
    const link = absoluteUrl(settings.publicUrl, verifyAddressUrl(token));
    await sendNotice(tx, {
      site: settings,
      to: email,
      subject: 'Confirm your address',
      text: `Someone (probably you), logged in to ${settings.publicUrl} as ${who.email}, asked to add ${email} to their account.\n\n`
        + `To confirm that this address is yours, open this link within a day while logged in as ${who.email}:\n\n  ${link}\n\n`
        + `It works once. If you did not ask for it, ignore this message: nothing changes.\n`,
    });
    return { outcome: 'sent' as const, email };
  });
}

export type VerifyLinkOutcome = VerifyOutcome | 'expired' | 'foreign';

/** What a verification link would do, without using it (the page with the button). */
export async function peekVerifyLink(pool: pg.Pool, who: AccountRef, token: string): Promise<{ outcome: 'ok' | 'expired' | 'foreign'; email: string | null }> {
  const found = looksLikeToken(token) ? await peekLoginToken(pool, hashToken(token), 'verify') : null;
  if (!found) return { outcome: 'expired', email: null };
  return { outcome: found.account_id === who.accountId ? 'ok' : 'foreign', email: found.email };
}

/**
 * Follows a verification link: the address becomes a verified one of `who`'s account. A link
 * asked for by another account is not used up ('foreign'); 'taken' when another account has the
 * address verified by now, and nothing changes.
 */
export async function followVerifyLink(pool: pg.Pool, who: AccountRef, token: string, settings: NoticeSettings): Promise<{ outcome: VerifyLinkOutcome; email: string | null }> {
  const peeked = await peekVerifyLink(pool, who, token);
  if (peeked.outcome !== 'ok') return { outcome: peeked.outcome, email: peeked.email };
  return withTransaction(pool, async (tx) => {
    const used = await consumeLoginToken(tx, hashToken(token), 'verify');
    if (!used || used.account_id !== who.accountId) return { outcome: 'expired' as const, email: null };
    const outcome = await verifyAddress(tx, who.accountId, used.email);
    if (outcome === 'verified') {
      await recordAudit(tx, { actor: who.email, action: 'account.address_verify', target: used.email });
      // A verified address logs in and can reset the password: the primary address is told, so
      // that one a thief added from a fresh stolen session is seen at once. As "another address",
      // as makePrimaryAddress says it: a mailbox may be read by others (shared, forwarded).
      await sendNotice(tx, {
        site: settings,
        to: who.email,
        subject: 'An address was added to your account',
        text: `Another address was added to your account on ${settings.publicUrl} (${who.email}, this address) on ${noticeTime(new Date())}. `
          + `It can now log in to the account and receive its mail. Your account page lists the account's addresses.\n\n`
          + (await notYou(tx, who, settings, false)),
      });
    }
    return { outcome, email: used.email };
  });
}

/** What the notices of this module need: the site's address and where its mail comes from. */
export type NoticeSettings = Pick<CoreSettings, 'publicUrl' | 'noticeFrom' | 'mailDomain'>;

/** "2026-03-02 10:00 UTC": when a change was made, in the notice that tells of it. */
export function noticeTime(at: Date): string {
  return `${at.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

/** What to do when a change to the account was not one's own, at the end of its notice. */
async function notYou(db: Queryable, who: AccountRef, settings: NoticeSettings, withThisAddress: boolean): Promise<string> {
  const tokens = await tokensAdvice(db, who.accountId, settings);
  return `If you made this change, there is nothing more to do.\n\n`
    + `If you did not, someone else may be using your account. `
    + (withThisAddress
      ? `Log in with this address (${absoluteUrl(settings.publicUrl, loginUrl())}): on your account page, make it primary again, `
      : `Log in with another address of the account (${absoluteUrl(settings.publicUrl, loginUrl())}): on your account page, `)
    + `remove the addresses you do not know, change your password (or set one), and choose "Log out everywhere else". `
    + tokens
    + `If you cannot log in any more, ask the administrators of ${settings.publicUrl} for help.\n`;
}

/**
 * For a site administrator's account, the line of a "not you?" notice about API tokens: a token
 * made from a stolen session outlives it, and neither a new password nor "Log out everywhere else"
 * stops it, so the way back includes revoking the ones they did not make. Empty for anyone else.
 */
export async function tokensAdvice(db: Queryable, accountId: number, settings: NoticeSettings): Promise<string> {
  const account = await findAccount(db, accountId);
  if (!account?.is_site_admin) return '';
  return `As a site administrator, also revoke the API tokens you did not make (${absoluteUrl(settings.publicUrl, '/admin/tokens')}): they keep working after all this. `;
}

/**
 * Removes an address of the account, never its primary one: how many sessions logged in with it
 * it ended, or null when there was no such address. Those sessions end with it (sql/0082), all but
 * `keepSession` (the hash of the one removing it): the address is no longer a way into the
 * account, and a thief who logged in by their own address is out. A verified address is told, in
 * the same transaction (a thief removing the owner's address is seen at once); one never verified
 * is not, for it may be anyone's (added, then removed, to mail them).
 */
export async function removeAccountAddress(pool: pg.Pool, who: AccountRef, email: string, settings: NoticeSettings, keepSession: string | null = null): Promise<number | null> {
  if (email === who.email) throw new InvalidInput('Your primary address cannot be removed: make another address primary first.', 'primary_address');
  return withTransaction(pool, async (tx) => {
    const removed = await removeAddress(tx, who.accountId, email);
    if (!removed) return null;
    const ended = await deleteSessionsLoggedInWith(tx, who.accountId, email, keepSession);
    await recordAudit(tx, { actor: who.email, action: 'account.address_remove', target: email, detail: ended ? { sessions_ended: ended } : {} });
    if (removed.verified) {
      // Not the account's primary address: it may be anyone's now, or the thief's.
      await sendNotice(tx, {
        site: settings,
        to: email,
        subject: 'An address was removed from your account',
        text: `${email} (this address) was removed from its account on ${settings.publicUrl} on ${noticeTime(new Date())}. `
          + `It no longer logs in to that account, and the sessions logged in with it there have been logged out. Its subscriptions to lists stay as they are.\n\n`
          + (await notYou(tx, who, settings, false)),
      });
    }
    return ended;
  });
}

/**
 * Makes a verified address the account's primary one (login name, audit name, notices). The
 * address that stops being primary is told, in the same transaction, without the new one.
 */
export async function makePrimaryAddress(pool: pg.Pool, who: AccountRef, email: string, settings: NoticeSettings): Promise<void> {
  await withTransaction(pool, async (tx) => {
    if (!(await setPrimaryAddress(tx, who.accountId, email))) {
      throw new InvalidInput(`${email} is not a verified address of your account, or is already its primary one.`, 'not_verified');
    }
    await recordAudit(tx, { actor: who.email, action: 'account.primary', target: email, detail: { previous: who.email } });
    // "Another address": the one who may have taken the account is not named to its owner's old
    // address, which may be read by others (a shared or forwarded mailbox).
    await sendNotice(tx, {
      site: settings,
      to: who.email,
      subject: 'Your primary address was changed',
      text: `The primary address of your account on ${settings.publicUrl} was changed on ${noticeTime(new Date())}: it was ${who.email} (this address), it is now another address of the account, where the site's mail to you goes from now on. `
        + `This address stays a verified address of the account: you can still log in with it.\n\n`
        + (await notYou(tx, who, settings, true)),
    });
  });
}
