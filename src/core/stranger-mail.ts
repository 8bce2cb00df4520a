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
 */

import type { Queryable } from '../db/pool.ts';
import { allowHit } from '../db/rate-limits.ts';
import { mailboxKey } from '../mail/address.ts';

/** Mail a stranger can have sent to one mailbox (its +tags left out) in a day, all paths together. */
export const STRANGER_MAIL_PER_DAY = 20;

/**
 * Counts one mail to `address` against its daily budget and tells whether it may go. Called last,
 * just before the mail is queued, so that a request refused for another reason spends nothing.
 */
export function mayMailStranger(db: Queryable, address: string): Promise<boolean> {
  return allowHit(db, `stranger-mail:${mailboxKey(address)}`, STRANGER_MAIL_PER_DAY, 86_400);
}
