/*
 * An account's several addresses, as a Mailman 3 user has them: adding one mails a link to it;
 * following that link, logged in as the same account, verifies it; a verified address can become
 * the primary one (accounts.email); any other can be removed. Every change is audited in its
 * transaction under the account's primary address.
 *
 * Adding an address never tells whether another account holds it: the same row, the same mail
 * and the same answer either way. The link is refused when followed if the address is verified
 * by another account by then, and nothing changes. It only works in a session of the account
 * that asked, so a link sent to a stranger's mailbox cannot hand their address to the asker by a
 * careless click.
 */

import type pg from 'pg';
import { hashToken, looksLikeToken } from '../auth/credentials.ts';
import { consumeLoginToken, issueLoginToken, peekLoginToken } from '../db/accounts.ts';
import { addPendingAddress, removeAddress, setPrimaryAddress, verifyAddress, type VerifyOutcome } from '../db/account-addresses.ts';
import { recordAudit } from '../db/audit.ts';
import { withTransaction } from '../db/pool.ts';
import { allowHit } from '../db/rate-limits.ts';
import { InvalidInput } from '../errors.ts';
import { normalizeEmail } from '../mail/address.ts';
import { absoluteUrl, verifyAddressUrl } from '../mail/urls.ts';
import { sendNotice } from './notices.ts';
import type { CoreSettings } from './settings.ts';

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
export async function addAddress(pool: pg.Pool, who: AccountRef, input: string, settings: Pick<CoreSettings, 'publicUrl' | 'noticeFrom' | 'mailDomain'>): Promise<{ outcome: AddAddressOutcome; email: string }> {
  const email = normalizeEmail(input);
  if (!email) throw new InvalidInput(`"${input}" is not an e-mail address.`, 'invalid_email');
  const underLimit = (await allowHit(pool, `maillink:verify:account:${who.accountId}`, LIMITS.perAccount, LIMITS.windowSeconds))
    && (await allowHit(pool, `maillink:verify:${email}`, LIMITS.perAddress, LIMITS.windowSeconds));
  return withTransaction(pool, async (tx) => {
    const row = await addPendingAddress(tx, who.accountId, email);
    if (row?.verified_at) return { outcome: 'yours' as const, email };
    await recordAudit(tx, { actor: who.email, action: 'account.address_add', target: email });
    if (!underLimit) return { outcome: 'sent' as const, email };
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
export async function followVerifyLink(pool: pg.Pool, who: AccountRef, token: string): Promise<{ outcome: VerifyLinkOutcome; email: string | null }> {
  const peeked = await peekVerifyLink(pool, who, token);
  if (peeked.outcome !== 'ok') return { outcome: peeked.outcome, email: peeked.email };
  return withTransaction(pool, async (tx) => {
    const used = await consumeLoginToken(tx, hashToken(token), 'verify');
    if (!used || used.account_id !== who.accountId) return { outcome: 'expired' as const, email: null };
    const outcome = await verifyAddress(tx, who.accountId, used.email);
    if (outcome === 'verified') await recordAudit(tx, { actor: who.email, action: 'account.address_verify', target: used.email });
    return { outcome, email: used.email };
  });
}

/** Removes an address of the account, never its primary one; whether there was one to remove. */
export async function removeAccountAddress(pool: pg.Pool, who: AccountRef, email: string): Promise<boolean> {
  if (email === who.email) throw new InvalidInput('Your primary address cannot be removed: make another address primary first.', 'primary_address');
  return withTransaction(pool, async (tx) => {
    const removed = await removeAddress(tx, who.accountId, email);
    if (removed) await recordAudit(tx, { actor: who.email, action: 'account.address_remove', target: email });
    return removed;
  });
}

/** Makes a verified address the account's primary one (login name, audit name, notices). */
export async function makePrimaryAddress(pool: pg.Pool, who: AccountRef, email: string): Promise<void> {
  await withTransaction(pool, async (tx) => {
    if (!(await setPrimaryAddress(tx, who.accountId, email))) {
      throw new InvalidInput(`${email} is not a verified address of your account, or is already its primary one.`, 'not_verified');
    }
    await recordAudit(tx, { actor: who.email, action: 'account.primary', target: email, detail: { previous: who.email } });
  });
}
