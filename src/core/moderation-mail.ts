/*
 * Moderation by mail, as Mailman does it: a moderator replies to a held notice (its Reply-To is
 * LIST-confirm+mod-TOKEN@, the token of one held post: held-notices.ts) with `approve`,
 * `reject REASON` or `discard`. Three things must hold, or nothing happens: the token names a post
 * held on this list (128 random bits, stored hashed, dead once the post is decided), and the
 * reply's From is an owner or moderator of the list, and the reply names the token's address in
 * To or Cc, not only in the envelope (addressedToToken). And unless the list trusts From as it is
 * (auth_policy=accept), that From must be proven as a member's post must: SPF or DKIM passing for
 * its domain, no DMARC failure; a token passed on (a forwarded notice) is then of no use to
 * whoever forges a moderator's address. The decision goes through moderate(), with its audit
 * entry (actor `mail:ADDRESS`), and the moderator is told the outcome by mail.
 */

import type pg from 'pg';
import type { Queryable } from '../db/pool.ts';
import { hashToken } from '../auth/credentials.ts';
import { heldByMailToken } from '../db/held.ts';
import { roleOnList } from '../db/list-admin.ts';
import type { ListRow } from '../db/lists.ts';
import { AppError, TemporaryFailure } from '../errors.ts';
import type { Logger } from '../log.ts';
import { commandText, findModerationCommand } from '../mail/commands.ts';
import type { ParsedMessage } from '../mail/parse.ts';
import type { AuthChecks } from '../mail/post-checks.ts';
import { dmarcForgery, provesFrom, unsureAuth } from './moderation-rules.ts';
import { heldPostUrl } from './held-notices.ts';
import { moderate } from './hold.ts';
import { sendNotice } from './notices.ts';
import type { CoreSettings } from './settings.ts';
import { oneLine } from '../mail/parsed-message.ts';

const DONE = { approve: 'approved', reject: 'rejected', discard: 'discarded' } as const;

/**
 * Acts on a moderator's reply. Returns null when it was answered, or why it was not acted on
 * (an unknown token, a sender who does not moderate the list): such mail gets no answer, since
 * its From may be forged, and the caller keeps it with that reason.
 */
export async function moderateByMail(pool: pg.Pool, list: ListRow, token: string, sender: string, parsed: ParsedMessage,
  settings: Pick<CoreSettings, 'retention' | 'publicUrl'>, log: Logger, authenticate: () => Promise<AuthChecks>): Promise<string | null> {
  const held = await heldByMailToken(pool, list.id, hashToken(token));
  if (!held) {
    log.warn({ list: list.address, sender }, 'moderation by mail with an unknown token: not acted on');
    return 'moderation by mail: the token names no held post of this list; not acted on';
  }
  if (!addressedToToken(parsed, token)) {
    log.warn({ list: list.address, sender, heldId: held.id }, 'moderation by mail whose To and Cc do not name the held post\'s address: not acted on');
    return 'moderation by mail: To and Cc do not name the held post\'s address (only the envelope does); not acted on';
  }
  const role = await roleOnList(pool, list.id, [sender]);
  if (!role) {
    log.warn({ list: list.address, sender, heldId: held.id }, 'moderation by mail from an address that does not moderate the list: not acted on');
    return `moderation by mail from ${sender}, who is not an owner or moderator of the list: not acted on`;
  }
  if (list.auth_policy !== 'accept') {
    const unproven = unprovenFrom(await authenticate(), sender);
    if (unproven === 'temperror') {
      // DNS did not answer for now: the moderator's server tries again later.
      throw new TemporaryFailure('4.7.0 the sender of this reply could not be authenticated for now (a DNS lookup failed); try again later', 'auth_temperror');
    }
    if (unproven) {
      log.warn({ list: list.address, sender, heldId: held.id, why: unproven }, 'moderation by mail whose From is not proven: not acted on');
      return `moderation by mail from ${sender}: ${unproven}; not acted on`;
    }
  }
  const what = `#${held.id} "${oneLine(held.subject) || '(no subject)'}" from ${oneLine(held.from_email) || 'an unknown sender'}`;
  const answer = (subject: string, lines: string[], db: Queryable = pool) => sendNotice(db, {
    to: sender, list, subject, inReplyTo: parsed.messageId, autoSubmitted: 'auto-replied',
    text: [...lines, '', `The held post: ${heldPostUrl(settings.publicUrl, list, held.id)}`].join('\n'),
  });
  const command = findModerationCommand(parsed.subject, await commandText(parsed));
  if (!command) {
    await answer(`Re: ${parsed.subject || 'held post'}`, [
      `No decision was found in your reply about the held post ${what} on ${list.address}.`,
      '',
      'Reply with one of these as the subject or the first line: approve, reject REASON, discard.',
    ]);
    return null;
  }
  // The answer is queued in the decision's transaction: queued apart, a failure to queue it
  // (451) left the decision taken, and the relay's retry told the moderator it had failed
  // ("already approved by" the moderator).
  const done = (tx: Queryable) => answer(`Held post ${DONE[command.action]} on ${list.address}`, [
    `The held post ${what} was ${DONE[command.action]}${command.reason ? ` (reason given to the sender: ${oneLine(command.reason)})` : ''}.`,
  ], tx);
  try {
    await moderate(pool, held.id, command.action, { actor: `mail:${sender}`, reason: command.reason ?? undefined, listId: list.id, settings, alongside: done });
  } catch (err) {
    if (!(err instanceof AppError)) throw err;
    await answer(`Could not ${command.action} the held post on ${list.address}`, [`The held post ${what} was not ${DONE[command.action]}: ${err.message}.`]);
  }
  return null;
}

/**
 * Whether the reply names the token's address in To or Cc, as a reply to the notice does (its
 * Reply-To is that address). The envelope alone is not signed: a mail a moderator signed with
 * DKIM for another purpose ("Approve." to a public list, its raw bytes in an archive) could
 * otherwise be replayed to a leaked token's address and decide the post. To and Cc are what DKIM
 * signatures cover.
 */
function addressedToToken(parsed: ParsedMessage, token: string): boolean {
  const wanted = token.toLowerCase();
  return [...(parsed.headers.get('to') ?? []), ...(parsed.headers.get('cc') ?? [])].some((v) => v.toLowerCase().includes(wanted));
}

/**
 * Why a reply's From is not proven by its authentication, as for a member's post
 * (moderation-rules.ts, rule 'authentication'): 'temperror' when a lookup failed for now; null
 * when SPF or DKIM passed for From's own domain and DMARC does not say it is forged.
 */
function unprovenFrom(a: AuthChecks, sender: string): string | null {
  const forged = dmarcForgery(a);
  if (forged) return forged;
  if (provesFrom(a, sender)) return null;
  if (unsureAuth(a)?.result === 'temperror') return 'temperror';
  return `neither SPF nor DKIM passes for ${a.fromDomain ?? '(no domain)'}`;
}
