import type pg from 'pg';
import { recordIngestError } from './db/ingest-errors.ts';
import type { ResolvedRecipient } from './db/lists.ts';
import { AppError, RejectedMessage, TemporaryFailure } from './errors.ts';
import type { Logger } from './log.ts';
import { parse, type ParsedMessage } from './mail/parse.ts';
import { post } from './posting.ts';

export interface Inbound {
  envelopeFrom: string | null;
  recipients: (ResolvedRecipient & { address: string })[];
  raw: Buffer;
  log: Logger;
}

/** One result per recipient, in order: null when it was taken, else the error to answer with. */
export type RecipientResult = AppError | null;

/**
 * Everything that arrives for one of our addresses comes through here, whatever the transport
 * (SMTP, LMTP, import). The message is parsed once, then each recipient is handled and committed
 * on its own: a retry after a partial failure finds the done ones already there (Message-ID).
 */
export async function receive(pool: pg.Pool, msg: Inbound): Promise<RecipientResult[]> {
  let parsed: ParsedMessage;
  try {
    parsed = await parse(msg.raw);
  } catch (err) {
    const reason = err instanceof AppError ? err.message : `message could not be parsed: ${(err as Error).message}`;
    await recordIngestError(pool, {
      envelopeFrom: msg.envelopeFrom,
      recipients: msg.recipients.map((r) => r.address),
      listId: msg.recipients[0]?.list.id,
      reason,
      raw: msg.raw,
    });
    msg.log.warn({ reason }, 'unparseable message recorded');
    const rejection = new RejectedMessage(`5.6.0 ${reason}; it was kept for the list owner`, 'unparseable', 554);
    return msg.recipients.map(() => rejection);
  }

  const log = msg.log.child({ messageId: parsed.messageId });
  const results: RecipientResult[] = [];
  for (const rcpt of msg.recipients) {
    try {
      await handle(pool, rcpt, msg, parsed, log);
      results.push(null);
    } catch (err) {
      if (err instanceof AppError) {
        results.push(err);
      } else {
        log.error({ err, rcpt: rcpt.address }, 'failed to take in message');
        results.push(new TemporaryFailure('4.3.0 temporary failure storing the message, try again later'));
      }
    }
  }
  return results;
}

async function handle(pool: pg.Pool, rcpt: Inbound['recipients'][number], msg: Inbound, parsed: ParsedMessage, log: Logger) {
  switch (rcpt.role) {
    case 'post':
      await post(pool, { list: rcpt.list, raw: msg.raw, message: parsed, envelopeFrom: msg.envelopeFrom, log });
      return;
    default:
      // The list's other addresses (requests, confirmations, owners, bounces) are handled by the
      // delivery side; until a handler exists the mail is kept, never dropped.
      await recordIngestError(pool, {
        listId: rcpt.list.id,
        envelopeFrom: msg.envelopeFrom,
        recipients: [rcpt.address],
        messageId: parsed.messageId,
        reason: `no handler for the ${rcpt.role} address yet`,
        raw: msg.raw,
      });
  }
}
