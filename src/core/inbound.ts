import type pg from 'pg';
import { isFaultOfInput } from '../db/pg-errors.ts';
import { handleBounceMail } from './bounces.ts';
import { listExists, resolveRecipient, type ListRow, type ResolvedRecipient } from '../db/lists.ts';
import { allowHit, clientKey } from '../db/rate-limits.ts';
import { AppError, RejectedMessage, TemporaryFailure } from '../errors.ts';
import type { Logger } from '../log.ts';
import { mailboxKey, normalizeEmail, roleAddress, splitAddress } from '../mail/address.ts';
import { isVacationSubject } from '../mail/automatic.ts';
import { commandText, findCommand, findModerationCommand, isAutomatic, MODERATION_TOKEN } from '../mail/commands.ts';
import { oneLine } from '../mail/parsed-message.ts';
import { parse, type ParsedMessage } from '../mail/parse.ts';
import type { AuthChecks, Peer, PostChecks } from '../mail/post-checks.ts';
import { forwardToOwners, sendNotice } from './notices.ts';
import { post } from './post.ts';
import { checkPost } from './post-checks.ts';
import { authenticatePost } from './post-authentication.ts';
import { moderateByMail } from './moderation-mail.ts';
import { dmarcForgery, provesFrom, spamReason, unsureAuth } from './moderation-rules.ts';
import { keepRejected } from './retention.ts';
import { scanForSpam } from './spam-check.ts';
import type { CoreSettings } from './settings.ts';
import { confirm, requestSubscription, requestUnsubscription } from './subscriptions.ts';
import { mayMailStranger, OWN_MAIL_PER_DAY, ownKey, STRANGER_MAIL_PER_DAY, type Requester } from './stranger-mail.ts';

export interface Inbound {
  envelopeFrom: string | null;
  /** the SMTP client's IP address, for the per-client quota on kept rejected mail */
  client?: string | null;
  /** the SMTP session's client, HELO and TLS, for the trace line and the authentication checks */
  peer?: Peer | null;
  recipients: (ResolvedRecipient & { address: string })[];
  raw: Buffer;
  log: Logger;
  /**
   * the address a login vouched for (a member's reply from the web, web/archive/reply.ts): when it
   * is the post's From, the post is authenticated by that login (RFC 8601 auth=pass), not by DNS
   */
  submittedBy?: string | null;
}

/** One result per recipient, in order: null when it was taken, else the error to answer with. */
export type RecipientResult = AppError | null;

/**
 * Everything that arrives for one of our addresses comes through here, whatever the transport
 * (SMTP, LMTP, import). The message is parsed once, then each recipient is handled and committed
 * on its own: a retry after a partial failure finds the done ones already there (Message-ID).
 */
export async function receive(pool: pg.Pool, msg: Inbound, settings: CoreSettings): Promise<RecipientResult[]> {
  let parsed: ParsedMessage;
  try {
    parsed = await parse(msg.raw);
  } catch (err) {
    const reason = err instanceof AppError ? err.message : `message could not be parsed: ${(err as Error).message}`;
    try {
      await keepRejected(pool, {
        envelopeFrom: msg.envelopeFrom,
        client: msg.client,
        recipients: msg.recipients.map((r) => r.address),
        listId: msg.recipients[0]?.list.id,
        reason,
        raw: msg.raw,
      }, settings.retention);
    } catch (recordErr) {
      // Not kept, so not refused: the sender keeps the message and tries again.
      msg.log.error({ err: recordErr, reason }, 'could not record an unparseable message');
      return msg.recipients.map(() => new TemporaryFailure('4.3.0 temporary failure storing the message, try again later'));
    }
    msg.log.warn({ reason }, 'unparseable message recorded');
    const rejection = new RejectedMessage(`5.6.0 ${reason}; it was kept for the list owner`, 'unparseable', 554);
    return msg.recipients.map(() => rejection);
  }

  const log = msg.log.child({ messageId: parsed.messageId });
  // Posts are checked once, whatever the number of lists they went to.
  const postedTo = msg.recipients.filter((r) => r.role === 'post').map((r) => r.list);
  let checks: PostChecks = {};
  if (postedTo.length > 0) {
    try {
      checks = await checkPost({ raw: msg.raw, message: parsed, envelopeFrom: msg.envelopeFrom, peer: msg.peer ?? null, submittedBy: msg.submittedBy ?? null, lists: postedTo, log }, settings);
    } catch (err) {
      if (!(err instanceof AppError)) throw err;
      // A check that asks to be tried again (the scanner is down and SPAM_CHECK_FAIL=tempfail).
      return msg.recipients.map(() => err);
    }
  }
  const results: RecipientResult[] = [];
  for (const rcpt of msg.recipients) {
    try {
      await handle(pool, settings, rcpt, msg, parsed, checks, log);
      results.push(null);
    } catch (err) {
      if (err instanceof AppError) {
        results.push(err);
      } else if (isFaultOfInput(err)) {
        results.push(await keepUnstorable(pool, settings, rcpt, msg, parsed, err as Error, log));
      } else if (await listGone(pool, rcpt)) {
        results.push(await refuseForGoneList(pool, settings, rcpt, msg, parsed, err as Error, log));
      } else {
        log.error({ err, rcpt: rcpt.address }, 'failed to take in message');
        results.push(new TemporaryFailure('4.3.0 temporary failure storing the message, try again later'));
      }
    }
  }
  return results;
}

async function handle(pool: pg.Pool, settings: CoreSettings, rcpt: Inbound['recipients'][number], msg: Inbound, parsed: ParsedMessage, checks: PostChecks, log: Logger) {
  const list = rcpt.list;
  switch (rcpt.role) {
    case 'post': {
      const outcome = await post(pool, { list, raw: msg.raw, message: parsed, envelopeFrom: msg.envelopeFrom, checks, log, settings });
      if (outcome.kind === 'refused') throw outcome.error;
      return;
    }
    case 'bounces':
      await handleBounceMail(pool, list, rcpt.token, msg.raw, parsed, log, settings);
      return;
    case 'owner':
      // Owners hear everything, including automatic mail, but never their own forward again.
      if ((parsed.headers.get('x-loop') ?? []).some((v) => v.toLowerCase().includes(roleAddress(list.address, 'owner')))) {
        return keep(pool, settings, rcpt, msg, parsed, 'mail to the owner address came back round (X-Loop): not forwarded again');
      }
      {
        const refusal = await ownerForwardRefusal(pool, list, normalizeEmail(parsed.fromEmail) ?? normalizeEmail(msg.envelopeFrom ?? '') ?? `client ${clientKey(msg.client)}`);
        if (refusal) return keep(pool, settings, rcpt, msg, parsed, refusal);
      }
      // A list created without owners has nobody to forward to: kept aside, not taken and lost.
      if ((await forwardToOwners(pool, list, msg.raw, settings.heloName)) === 0) return keep(pool, settings, rcpt, msg, parsed, 'mail to the owner address of a list without owners: not forwarded');
      return;
    default:
      break;
  }
  // The command addresses answer people only: never a bounce, an auto-reply or another list.
  if (isAutomatic(parsed.headers, msg.envelopeFrom, parsed.fromEmail)) {
    return keep(pool, settings, rcpt, msg, parsed, `automatic mail to the ${rcpt.role} address: not answered`);
  }
  // Some vacation programs mark their replies only in the Subject ("Automatic reply: confirm …"),
  // and answer Reply-To: one such reply to a confirmation subscribed an address nobody confirmed.
  if (isVacationSubject(parsed.subject)) {
    return keep(pool, settings, rcpt, msg, parsed, `an automatic reply (Subject: ${oneLine(parsed.subject).slice(0, 200)}) to the ${rcpt.role} address: not acted on`);
  }
  const sender = normalizeEmail(parsed.fromEmail) ?? normalizeEmail(msg.envelopeFrom ?? '');
  if (!sender) return keep(pool, settings, rcpt, msg, parsed, `mail to the ${rcpt.role} address without a usable sender address`);
  // A decision on a held post is guarded by its token, not by the per-address limit below: an
  // unknown token or a stranger gets no answer, and a token acts once. Counted with the rest, a
  // moderator clearing a flood, or anyone writing 20 commands in the moderator's name, silenced
  // the moderator's own decisions for an hour.
  if (rcpt.role === 'confirm' && MODERATION_TOKEN.test(rcpt.token ?? '')) {
    // The checks of a post, when the same mail also went to a post address: one message, one authentication.
    const notActed = await moderateByMail(pool, list, rcpt.token!, sender, parsed, settings, log,
      async () => checks.auth ?? authenticatePost({ raw: msg.raw, envelopeFrom: msg.envelopeFrom, peer: msg.peer ?? null, submittedBy: msg.submittedBy ?? null, message: parsed, log }, settings));
    if (notActed) await keep(pool, settings, rcpt, msg, parsed, notActed);
    return;
  }
  // Every answer from here goes to the From. When its domain says by DMARC (p=reject or
  // quarantine) that the mail is not its own, the answer (a confirmation, help) would go to
  // someone who did not write: backscatter. Such mail is kept, unanswered and uncounted. So is
  // mail whose checks give no verdict at all (a From of more domains than are checked): put a
  // p=reject address first among ten others, and DMARC said nothing, so the answers went to it.
  // Checks that could not finish for now (a DNS lookup failed where the verdict hangs on it: the
  // From domain's DMARC record, slow perhaps because a forger made it so) are no verdict either:
  // answered, the help or confirmation went to a p=reject domain's address. 451 instead, as
  // moderation by mail does: the sender's server tries again, and a real sender is answered then.
  let authenticated: Promise<AuthChecks> | undefined;
  const authentication = () => (authenticated ??= checks.auth ? Promise.resolve(checks.auth) : authenticatePost({ raw: msg.raw, envelopeFrom: msg.envelopeFrom, peer: msg.peer ?? null, submittedBy: msg.submittedBy ?? null, message: parsed, log }, settings));
  const forgery = async () => {
    const auth = await authentication();
    const forged = dmarcForgery(auth) ?? spfForgery(auth, msg.envelopeFrom, sender);
    const unsure = unsureAuth(auth);
    if (!forged && unsure?.result === 'temperror') {
      throw new TemporaryFailure('4.7.0 the sender could not be authenticated for now (a DNS lookup failed); try again later', 'auth_temperror');
    }
    const why = forged ?? (unsure?.result === 'permerror' ? `the sender cannot be authenticated (${unsure.reason})` : null);
    return why && `${why}: not answered, as mail in the name of ${sender}`;
  };
  // Mail whose From is proven is the mailbox's own request: its limits and daily budget are not
  // the ones a stranger spends by forging commands in its name (stranger-mail.ts).
  const requester = async (): Promise<Requester> => (provesFrom(await authentication(), sender) ? 'itself' : 'stranger');
  // Mail the spam scanner scores as high as a post the list would hold is not answered either: its
  // From is as likely forged as a spam post's, and the answer repeats its Subject to whoever From
  // names. Scanned once per message: as a post when it was also posted, else by the first command
  // address that asks (kept in `checks` for the others it went to).
  const spammy = async () => {
    if (!checks.spam && !checks.spamUnchecked) Object.assign(checks, await scanForSpam({ raw: msg.raw, envelopeFrom: msg.envelopeFrom, peer: msg.peer ?? null, lists: [rcpt], log }, settings.spamCheck));
    const { spam } = checks;
    const hold = list.spam_hold_score;
    return spam && hold !== null && spam.score >= hold ? `${spamReason(spam, hold)}: not answered` : null;
  };
  // A confirmation is guarded by its token (128 bits) as a moderation reply is: only the answer
  // to one that cannot be used counts against the limit. Counted before it, anyone who wrote 20
  // commands in a member's name silenced that member's confirmation for an hour.
  if (rcpt.role === 'confirm') {
    const notAnswered = await confirmByMail(pool, settings, list, rcpt.token ?? '', sender, parsed, log, requester, async (by) => (await forgery()) ?? (await spammy()) ?? commandRefusal(pool, list, sender, by));
    if (notAnswered) await keep(pool, settings, rcpt, msg, parsed, notAnswered);
    return;
  }
  const forged = await forgery();
  if (forged) {
    log.warn({ sender, role: rcpt.role, list: list.address }, 'mail command whose From fails DMARC: not answered');
    return keep(pool, settings, rcpt, msg, parsed, forged);
  }
  const spam = await spammy();
  if (spam) {
    log.warn({ sender, role: rcpt.role, list: list.address }, 'mail command scored as spam: not answered');
    return keep(pool, settings, rcpt, msg, parsed, spam);
  }
  const by = await requester();
  const refused = await commandRefusal(pool, list, sender, by);
  if (refused) {
    log.warn({ sender, role: rcpt.role, list: list.address }, 'too many mail commands from one address: not answered');
    return keep(pool, settings, rcpt, msg, parsed, refused);
  }
  switch (rcpt.role) {
    case 'subscribe':
      await requestSubscription(pool, list, sender, { via: 'mail', by, settings });
      return;
    case 'unsubscribe':
      await requestUnsubscription(pool, list, sender, { via: 'mail', by, settings });
      return;
    case 'request': {
      const text = await commandText(parsed);
      const command = findCommand(parsed.subject, text);
      // A decision on a held post counts only at the post's own address (the notice's Reply-To).
      if (!command && findModerationCommand(parsed.subject, text)) {
        log.warn({ list: list.address, sender }, 'moderation command without a held post\'s token: not acted on');
        return keep(pool, settings, rcpt, msg, parsed, 'a moderation command sent to the -request address, without the token of a held post: not acted on');
      }
      if (command?.name === 'subscribe') await requestSubscription(pool, list, sender, { via: 'mail', by, mode: command.mode ?? undefined, settings });
      else if (command?.name === 'unsubscribe') await requestUnsubscription(pool, list, sender, { via: 'mail', by, settings });
      else if (!(await mayMailStranger(pool, sender, by))) return keep(pool, settings, rcpt, msg, parsed, overBudget(sender, by));
      else await sendHelp(pool, list, sender, parsed, command === null);
      return;
    }
  }
}

/**
 * Commands answered per address and list in a day, Mailman's max_autoresponses_per_day (10), so
 * that commands written in someone's name on one list do not silence that person's commands on
 * the others. Over the whole site, the answers share the mailbox's daily budget with every other
 * mail a stranger can have sent to it (stranger-mail.ts): a From that is forged, where its domain
 * does not say so by DMARC, still gets them, and 50 commands a day on the site, 10 confirmations
 * and the login links came to over 200 mails a day. Commands whose From is proven count apart,
 * in both: forged ones in the mailbox's name do not silence its own.
 */
const COMMANDS_PER_DAY = 10;

/**
 * Mail to LIST-owner@ forwarded in an hour: from one sender, and in all. Anyone may write to the
 * owners, and each message is sent on to every one of them: without a bound, one stranger's
 * script filled the owners' mailboxes at the rate the listener takes mail. What is over is kept
 * aside with the reason (ingest_errors, the panel's "kept aside"), not lost.
 */
const OWNER_FORWARDS_PER_SENDER = 10;
const OWNER_FORWARDS_PER_LIST = 100;

/** Why mail from `sender` to `list`'s owners is not forwarded now, or null when it may be. */
async function ownerForwardRefusal(pool: pg.Pool, list: ListRow, sender: string): Promise<string | null> {
  if (!(await allowHit(pool, `owner-forward:${list.id}:${sender}`, OWNER_FORWARDS_PER_SENDER, 3600))) {
    return `more than ${OWNER_FORWARDS_PER_SENDER} messages in an hour from ${sender} to ${roleAddress(list.address, 'owner')}: not forwarded`;
  }
  if (!(await allowHit(pool, `owner-forward:${list.id}`, OWNER_FORWARDS_PER_LIST, 3600))) {
    return `more than ${OWNER_FORWARDS_PER_LIST} messages in an hour to ${roleAddress(list.address, 'owner')}: not forwarded`;
  }
  return null;
}

/**
 * The sender's own domain says by SPF that the server that handed the mail over may not send in
 * its name (spf=fail, `-all`), the envelope is in From's domain, and no signature of that domain
 * vouches for it instead: mail in someone's name, whatever DMARC policy (p=none, or none at all)
 * the domain publishes. Answered, the confirmation or help went to the person named.
 */
function spfForgery(auth: AuthChecks, envelopeFrom: string | null, sender: string): string | null {
  const domain = splitAddress(sender)?.domain;
  if (auth.spf !== 'fail' || auth.aligned || !domain || splitAddress(normalizeEmail(envelopeFrom ?? '') ?? '')?.domain !== domain) return null;
  return `${domain} does not let this server send its mail (spf=fail)`;
}

const overBudget = (sender: string, by: Requester) => (by === 'itself'
  ? `more than ${OWN_MAIL_PER_DAY} mails a day to ${mailboxKey(sender)} asked for by its own authenticated mail: not answered`
  : `more than ${STRANGER_MAIL_PER_DAY} mails a day to ${mailboxKey(sender)} asked for by mail or on the web: not answered`);

/**
 * Why a command from `sender` to `list` is not answered now, or null when it may be. The mailbox's
 * own authenticated commands (`by` itself) count apart from the ones anyone may forge in its name.
 */
async function commandRefusal(pool: pg.Pool, list: ListRow, sender: string, by: Requester): Promise<string | null> {
  const mailbox = mailboxKey(sender);
  if (!(await allowHit(pool, ownKey(`mail-command:${list.id}:${mailbox}`, by), COMMANDS_PER_DAY, 86_400))) {
    return `more than ${COMMANDS_PER_DAY} mail commands in a day from ${sender} to ${list.address}: not answered`;
  }
  return null;
}

/**
 * Acts on a confirmation. One that cannot be used is answered unless `refusal` (a forged From,
 * the command limit) says why not, which is then returned for the mail to be kept with.
 */
async function confirmByMail(pool: pg.Pool, settings: CoreSettings, list: ListRow, token: string, sender: string, parsed: ParsedMessage, log: Logger,
  requester: () => Promise<Requester>, refusal: (by: Requester) => Promise<string | null>): Promise<string | null> {
  try {
    const result = await confirm(pool, token, settings);
    log.info({ list: list.address, action: result.action, state: result.state }, 'confirmed by mail');
  } catch (err) {
    if (!(err instanceof AppError)) throw err;
    const by = await requester();
    const refused = await refusal(by);
    const why = refused ?? (await mayMailStranger(pool, sender, by) ? null : overBudget(sender, by));
    if (why) {
      log.warn({ sender, list: list.address, why }, 'an unusable confirmation not answered');
      return why;
    }
    await sendNotice(pool, {
      to: sender, list, subject: `Re: ${parsed.subject}`, inReplyTo: parsed.messageId, autoSubmitted: 'auto-replied',
      text: `Your confirmation for ${list.address} could not be used: ${err.message}.\n\nYou can start again by writing "subscribe" to ${roleAddress(list.address, 'request')}.\n`,
    });
  }
  return null;
}

async function sendHelp(pool: pg.Pool, list: ListRow, to: string, parsed: ParsedMessage, unknown: boolean) {
  const request = roleAddress(list.address, 'request');
  await sendNotice(pool, {
    to,
    list,
    subject: `Re: ${parsed.subject || 'help'}`,
    inReplyTo: parsed.messageId,
    autoSubmitted: 'auto-replied',
    text: [
      ...(unknown ? ['No command was found in your message.', ''] : []),
      `This is the command address of the mailing list ${list.address}${list.description ? ` (${list.description})` : ''}.`,
      '',
      'Send one of these words as the subject or the first line of a message:',
      `  subscribe     join the list (a confirmation is mailed to you first); "subscribe digest" for digests`,
      `  unsubscribe   leave the list (a confirmation is mailed to you first)`,
      `  help          this text`,
      '',
      `Commands go to ${request}; you can also write to ${roleAddress(list.address, 'subscribe')} or ${roleAddress(list.address, 'unsubscribe')}.`,
      `To post, write to ${list.address}. To reach the people running the list, write to ${roleAddress(list.address, 'owner')}.`,
    ].join('\n'),
  });
}

/**
 * A message PostgreSQL refuses for what it holds (pg-errors.ts) would be refused again on every
 * retry: it is kept aside with the reason and answered 554, never 451 forever. If even the record
 * cannot be written, that is the system's fault: 451, and the sender keeps the message.
 */
async function keepUnstorable(pool: pg.Pool, settings: CoreSettings, rcpt: Inbound['recipients'][number], msg: Inbound, parsed: ParsedMessage, err: Error, log: Logger): Promise<AppError> {
  const reason = `the message could not be stored: ${err.message}`;
  try {
    await keep(pool, settings, rcpt, msg, parsed, reason);
  } catch (recordErr) {
    log.error({ err: recordErr, cause: err.message, rcpt: rcpt.address }, 'could not record an unstorable message');
    return new TemporaryFailure('4.3.0 temporary failure storing the message, try again later');
  }
  log.warn({ rcpt: rcpt.address, reason }, 'unstorable message refused and kept aside');
  return new RejectedMessage(`5.6.0 ${reason}; it was kept for the list owner`, 'unstorable', 554);
}

/**
 * Whether the list a recipient named at RCPT TO is gone now: deleted, and no list answers at the
 * address either (one deleted and made again takes the retry). Asked only after storing the
 * message failed, of PostgreSQL as committed; a question it cannot answer is a no, and the
 * sender hears 451 and tries again, as before.
 */
async function listGone(pool: pg.Pool, rcpt: Inbound['recipients'][number]): Promise<boolean> {
  try {
    return !(await listExists(pool, rcpt.list.id)) && (await resolveRecipient(pool, rcpt.address)) === null;
  } catch {
    return false;
  }
}

/**
 * A message accepted at RCPT TO for a list deleted before it was stored. It was answered 451,
 * then 550 at RCPT TO on the retry: never lost, but the sender waited for the retry to learn the
 * list is gone. Now 550 at once, the message kept aside with the reason as any refused one is.
 */
async function refuseForGoneList(pool: pg.Pool, settings: CoreSettings, rcpt: Inbound['recipients'][number], msg: Inbound, parsed: ParsedMessage, err: Error, log: Logger): Promise<AppError> {
  const reason = `the list ${rcpt.list.address} was deleted while this message was on its way; it was not delivered`;
  try {
    await keepRejected(pool, {
      envelopeFrom: msg.envelopeFrom, client: msg.client, recipients: [rcpt.address], messageId: parsed.messageId, reason, raw: msg.raw,
    }, settings.retention);
  } catch (recordErr) {
    log.error({ err: recordErr, rcpt: rcpt.address }, 'could not record a message for a deleted list');
    return new TemporaryFailure('4.3.0 temporary failure storing the message, try again later');
  }
  log.warn({ rcpt: rcpt.address, cause: err.message }, 'message for a list deleted since RCPT TO refused and kept aside');
  return new RejectedMessage(`5.1.1 ${reason}`, 'list_deleted', 550);
}

/** Mail we take but do not act on is kept with why, never silently dropped. */
async function keep(pool: pg.Pool, settings: CoreSettings, rcpt: Inbound['recipients'][number], msg: Inbound, parsed: ParsedMessage, reason: string) {
  await keepRejected(pool, {
    listId: rcpt.list.id,
    envelopeFrom: msg.envelopeFrom,
    client: msg.client,
    recipients: [rcpt.address],
    messageId: parsed.messageId,
    reason,
    raw: msg.raw,
  }, settings.retention);
}
