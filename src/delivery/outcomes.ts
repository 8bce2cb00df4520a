import type pg from 'pg';
import { recordDeliveryFailure } from '../bounces.ts';
import { markFailed, markRetry, markSent, type ClaimedRow, type RowError } from '../db/outbox.ts';
import type { Logger } from '../log.ts';
import { deliveries } from './metrics.ts';

/**
 * What happened to each copy, written back in bulk: one UPDATE for the delivered rows, one for
 * the deferred, one for the failed, every `flushRows` results or `flushMs`. Writes are chained,
 * never concurrent. Copies sent but not yet recorded are the only ones a crash can send twice,
 * so flushRows stays well under the batch size.
 */
export class Outcomes {
  private sent: number[] = [];
  private retry: (RowError & { row: ClaimedRow })[] = [];
  private failed: (RowError & { row: ClaimedRow; stage: string })[] = [];
  private writing: Promise<void> = Promise.resolve();
  private lastWrite = Date.now();
  private error: unknown = null;

  constructor(
    private readonly pool: pg.Pool,
    private readonly giveUpHours: number,
    private readonly flushRows: number,
    private readonly log: Logger,
    private readonly flushMs = 200,
  ) {}

  delivered(row: ClaimedRow) {
    this.sent.push(row.id);
    this.maybeWrite();
  }

  deferred(row: ClaimedRow, error: string) {
    this.retry.push({ id: row.id, error, row });
    this.maybeWrite();
  }

  /** `stage`: the SMTP command refused; only a refused RCPT TO is about the member's address. */
  failedFor(row: ClaimedRow, error: string, stage = 'RCPT TO') {
    this.failed.push({ id: row.id, error, row, stage });
    this.maybeWrite();
  }

  /** Writes whatever is pending and waits for it; throws if any write failed. */
  async finish(): Promise<void> {
    this.queueWrite();
    await this.writing;
    if (this.error) throw this.error;
  }

  private maybeWrite() {
    const pending = this.sent.length + this.retry.length + this.failed.length;
    if (pending >= this.flushRows || Date.now() - this.lastWrite >= this.flushMs) this.queueWrite();
  }

  private queueWrite() {
    const sent = this.sent.splice(0);
    const retry = this.retry.splice(0);
    const failed = this.failed.splice(0);
    this.lastWrite = Date.now();
    if (sent.length + retry.length + failed.length === 0) return;
    this.writing = this.writing.then(() => this.write(sent, retry, failed)).catch((err) => {
      this.error ??= err;
      this.log.error({ err }, 'could not record delivery results');
    });
  }

  private async write(sent: number[], retry: (RowError & { row: ClaimedRow })[], failed: (RowError & { row: ClaimedRow; stage: string })[]) {
    await markSent(this.pool, sent);
    const gaveUp = new Set(await markRetry(this.pool, retry, this.giveUpHours));
    await markFailed(this.pool, failed);
    deliveries.inc({ result: 'sent' }, sent.length);
    deliveries.inc({ result: 'deferred' }, retry.length - gaveUp.size);
    deliveries.inc({ result: 'failed' }, failed.length + gaveUp.size);
    for (const r of retry) {
      this.log.child({ outboxId: r.id, attempt: r.row.attempts + 1 }).info({ recipient: r.row.recipient, error: r.error }, gaveUp.has(r.id) ? 'delivery given up' : 'delivery deferred');
    }
    for (const f of failed) {
      const log = this.log.child({ outboxId: f.id, attempt: f.row.attempts + 1 });
      log.warn({ recipient: f.row.recipient, error: f.error }, 'delivery failed permanently');
      // A refusal of a member's copy is a bounce like any other (5.7.x policy ones do not count;
      // nor do refusals of our sender at MAIL FROM or of the content after DATA).
      if (f.row.member_id !== null && f.row.list_id !== null && f.row.kind !== 'notice' && f.stage !== 'none') {
        await recordDeliveryFailure(this.pool, f.row.member_id, f.row.list_id, f.row.recipient, f.error, log, f.stage === 'RCPT TO');
      }
    }
  }
}
