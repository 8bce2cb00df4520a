/*
 * Mail that anyone may make the site send to an address they name: a confirmation request (by
 * mail or the subscribe form), the answer to a mail command, the "awaits moderation" reply, the
 * link that verifies an address added to someone's account. (Login and password-reset links are
 * not counted: they go only to addresses the site knows, three an hour each, and a budget spent
 * by a stranger would keep their owner out of the account for a day.)
 * Each path has limits of its own, per list and per hour; this is the one budget they share per
 * mailbox for the whole site and a day, so that a stranger who uses them all, from many client
 * addresses and envelope senders, still reaches a victim only a few times a day. Before it, one
 * address got 50 command answers, 10 confirmation requests and 144 login and reset links a day,
 * besides an hourly "awaits moderation" reply from every list that sends them.
 *
 * A request the mailbox itself provably sent (its From passes DMARC-style alignment: SPF or DKIM
 * passes for From's own domain, and DMARC does not call it forged) is not a stranger's: it counts
 * against a budget of its own, of the same size. With one budget, 20 commands forged in a
 * victim's name spent it, and the victim's own help answers and confirmation requests were then
 * held back for the day. A stranger can spend the second only by sending mail that authenticates
 * as the victim's domain, which is what the check rules out.
 */

import type { Queryable } from '../db/pool.ts';
import { allowHit } from '../db/rate-limits.ts';
import { mailboxKey } from '../mail/address.ts';

/** Mail a stranger can have sent to one mailbox (its +tags left out) in a day, all paths together. */
export const STRANGER_MAIL_PER_DAY = 20;
/** Mail the mailbox's own authenticated requests can have sent to it in a day, apart from the above. */
export const OWN_MAIL_PER_DAY = 20;

/**
 * Who asked for a mail to an address: `stranger` (a From that nothing proves, a web form, a
 * logged-in person naming someone else's address) or `itself` (mail whose From is proven:
 * provesFrom() in moderation-rules.ts). Each has its budget; rate-limit keys of the other limits
 * a stranger could spend in the victim's name take the same split (ownKey()).
 */
export type Requester = 'stranger' | 'itself';

/** `key` for a stranger's requests, `key` with `:own` for the mailbox's own: the two never share a count. */
export function ownKey(key: string, by: Requester): string {
  return by === 'itself' ? `${key}:own` : key;
}

/**
 * Counts one mail to `address` against its daily budget and tells whether it may go. Called last,
 * just before the mail is queued, so that a request refused for another reason spends nothing.
 */
export function mayMailStranger(db: Queryable, address: string, by: Requester = 'stranger'): Promise<boolean> {
  const mailbox = mailboxKey(address);
  return by === 'itself'
    ? allowHit(db, `own-mail:${mailbox}`, OWN_MAIL_PER_DAY, 86_400)
    : allowHit(db, `stranger-mail:${mailbox}`, STRANGER_MAIL_PER_DAY, 86_400);
}
