import type pg from 'pg';
import { followUpOf, recordRefusals } from '../core/refusals.ts';
import { markFailed, markRetry, markSent, type ClaimedId, type ClaimedRow, type Refusal, type RowError } from '../db/outbox.ts';
import { isDataError } from '../db/pg-errors.ts';
import { isConnectionLoss } from '../db/pool.ts';
import type { Logger } from '../log.ts';
import { deliveries } from './metrics.ts';

type Retry = RowError & { row: ClaimedRow };
type Failure = Refusal & { row: ClaimedRow };

/**
 * An error's text as PostgreSQL text can hold it, whatever it came from (a server's reply, an
 * exception's message): one NUL in it failed the whole write of the results, and the worker, which
 * sends nothing more until its results are written, stalled for good. Long texts are cut.
 */
function storable(error: string): string {
  const text = error.includes('\0') ? error.replaceAll('\0', ' ') : error;
  return text.length > 2000 ? `${text.slice(0, 2000)}…` : text;
}

/** Waits between tries of a write whose connection was lost; then the results wait for the next round. */
const RETRY_MS = [200, 1000];

/**
 * What happened to each copy, written back in bulk: one UPDATE for the delivered rows, one for
 * the deferred, one for the failed, every `flushRows` results or `flushMs`. Writes never run
 * concurrently, and results that arrive while one runs all go into the next (group commit): when
 * commits are slow (a busy disk's fsync), each carries more rows instead of queueing behind
 * each other with `flushRows` apiece, which capped sending at `flushRows` per commit.
 *
 * Copies sent but not yet recorded are the ones a crash sends twice, so their number is bounded:
 * the worker asks `room()` before each send and waits while sent-but-unrecorded copies and copies
 * in flight would pass its batch size, so a database slow to record holds sending back instead
 * of letting it run ahead. A write whose connection is lost is tried again on a fresh one; if the
 * database stays away, the results are kept here (the worker lives on, its rows stay claimed by
 * it) and written before the worker claims anything more: a database fault never turns into
 * copies sent twice. A row the database refuses for what it holds is no fault of the database's:
 * it is recorded with a fixed text instead of its error (writeRows), so that it cannot stall
 * delivery for good.
 */
export class Outcomes {
  private sent: ClaimedId[] = [];
  private retry: Retry[] = [];
  private failed: Failure[] = [];
  /** rows handed to the write that has not finished */
  private writingRows = 0;
  private writing: Promise<void> | null = null;
  /** results came while a write ran that should not wait for flushRows or flushMs */
  private again = false;
  private lastWrite = performance.now();
  /** a write of results that came since the last, due flushMs after it */
  private timer: NodeJS.Timeout | null = null;
  private error: unknown = null;
  private waiters: (() => void)[] = [];
  private interrupted = false;

  constructor(
    private readonly pool: pg.Pool,
    /** the worker whose claims these are (locked_by) */
    private readonly worker: string,
    private readonly giveUpHours: number,
    private readonly flushRows: number,
    private readonly log: Logger,
    /** PUBLIC_URL, for the link in the notice of a member disabled by bounces */
    private readonly publicUrl: string,
    private readonly flushMs = 200,
  ) {}

  /** results not yet written to the database */
  get unrecorded(): number {
    return this.sent.length + this.retry.length + this.failed.length + this.writingRows;
  }

  /** a write failed and its results wait here: send nothing more until finish() succeeds */
  get failing(): boolean {
    return this.error !== null;
  }

  delivered(row: ClaimedRow) {
    this.sent.push(row); // its id and the attempts its claim read: markSent's key
    this.maybeWrite();
  }

  deferred(row: ClaimedRow, error: string) {
    this.retry.push({ id: row.id, attempts: row.attempts, error: storable(error), row });
    this.maybeWrite();
  }

  /** `stage`: the SMTP command refused; only a refused RCPT TO is about the member's address. */
  failedFor(row: ClaimedRow, error: string, stage = 'RCPT TO') {
    const text = storable(error);
    // Marked with its stage in the statement that settles it when it has a bounce to record.
    const bounceStage = followUpOf(row, stage, text) ? stage : null;
    this.failed.push({ id: row.id, attempts: row.attempts, error: text, row, bounceStage });
    this.maybeWrite();
  }

  /**
   * Resolves once fewer than `limit` results (plus `inFlight` copies) would be lost to a crash,
   * or when writing fails (the caller then stops sending).
   */
  async room(limit: number, inFlight: () => number): Promise<void> {
    while (this.unrecorded + inFlight() >= limit && !this.failing && !this.interrupted) {
      this.queueWrite();
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /** Lets every room() waiter go at once (the worker is stopping; it sends nothing more). */
  interrupt() {
    this.interrupted = true;
    for (const wake of this.waiters.splice(0)) wake();
  }

  /** Writes everything pending, kept results included, and waits for it; throws if a write failed. */
  async finish(): Promise<void> {
    this.error = null;
    for (;;) {
      this.queueWrite();
      if (!this.writing) break;
      await this.writing;
      if (this.error) throw this.error;
    }
  }

  private maybeWrite() {
    const pending = this.sent.length + this.retry.length + this.failed.length;
    if (pending >= this.flushRows || performance.now() - this.lastWrite >= this.flushMs) return this.queueWrite();
    // Not left for the next result, which may be minutes away (the other lanes waiting on a slow
    // receiver's reply to its final dot): written flushMs after the last write at the latest.
    if (pending > 0 && !this.timer) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.queueWrite();
      }, Math.max(0, this.lastWrite + this.flushMs - performance.now()));
      this.timer.unref();
    }
  }

  private queueWrite() {
    if (this.failing) return; // kept until finish() tries again
    if (this.writing) {
      // One write at a time: what is pending goes, all of it, as soon as this one is done.
      this.again = true;
      return;
    }
    const sent = this.sent.splice(0);
    const retry = this.retry.splice(0);
    const failed = this.failed.splice(0);
    this.lastWrite = performance.now();
    const rows = sent.length + retry.length + failed.length;
    if (rows === 0) return;
    this.writingRows = rows;
    this.writing = this.write(sent, retry, failed).catch((err) => void (this.error ??= err)).finally(() => {
      this.writingRows = 0;
      this.writing = null;
      if (this.again || this.waiters.length > 0) {
        this.again = false;
        this.queueWrite();
      }
      for (const wake of this.waiters.splice(0)) wake();
    });
  }

  /**
   * One set of results, step by step; what a step could not write goes back to the pending ones,
   * with the steps after it. The rows written are counted, logged and their bounces recorded.
   */
  private async write(sent: ClaimedId[], allRetry: Retry[], allFailed: Failure[]) {
    let delivered: number[];
    try {
      delivered = await this.attempt(() => markSent(this.pool, sent));
    } catch (err) {
      this.fault(err);
      return this.keep(sent, allRetry, allFailed);
    }
    const deferred = await this.writeRows(allRetry, (rows) => markRetry(this.pool, this.worker, rows, this.giveUpHours));
    const refused = deferred.left.length > 0
      ? { written: [], returned: [], left: allFailed }
      : await this.writeRows(allFailed, (rows) => markFailed(this.pool, this.worker, rows));
    this.keep([], deferred.left, refused.left);
    const retry = deferred.written;
    // Counted: only the rows whose result this worker wrote, as delivery_hourly counts them (a
    // copy requeued and settled by another worker is that worker's to count). Refusals are
    // logged on the same terms.
    const ours = new Set(refused.returned.flat());
    const failed = refused.written.filter((f) => ours.has(f.id));
    const gaveUp = new Set(deferred.returned.flatMap((r) => r.failed));
    deliveries.inc({ result: 'sent' }, delivered.length);
    deliveries.inc({ result: 'deferred' }, deferred.returned.flatMap((r) => r.queued).length);
    deliveries.inc({ result: 'failed' }, failed.length + gaveUp.size);
    for (const r of retry) {
      this.log.child({ outboxId: r.id, attempt: r.row.attempts + 1 }).info({ recipient: r.row.recipient, error: r.error }, gaveUp.has(r.id) ? 'delivery given up' : 'delivery deferred');
    }
    for (const f of failed) {
      this.log.child({ outboxId: f.id, attempt: f.row.attempts + 1 }).warn({ recipient: f.row.recipient, error: f.error }, 'delivery failed permanently');
    }
    // Their bounces, too-big notices and probes' disables. Every row written is asked, not only
    // those the write returned: a write whose commit went unheard and was tried again returned
    // none, but its rows are marked all the same. Whoever clears a mark records it, once.
    const marked = refused.written.filter((f) => f.bounceStage !== null);
    await this.attempt(() => recordRefusals(this.pool, { publicUrl: this.publicUrl }, this.log, marked.map((f) => f.id), new Map(marked.map((f) => [f.id, f.error]))))
      .catch((err) => this.log.error({ err }, 'could not record the bounces of refused copies; the chores record them'));
  }

  /**
   * Writes results that each carry their own error text, all in one statement. When the database
   * refuses that statement for what a row holds (a data error: SQLSTATE class 22 or 23, from a
   * check, a trigger, a text it will not take), the same statement would fail on every try, and
   * the worker, which sends nothing more until its results are written, would stall for good. So
   * the rows are then written one at a time, and a row refused alone is written with a fixed text
   * in place of its error (the original is logged). If even that is refused, the fault is not the
   * row's (a broken schema or statement): it and the rows after it are left, to be kept.
   * Returns the rows written (with their own error text, for the log and bounce classification),
   * what each statement returned, and the rows left.
   */
  private async writeRows<R extends Retry | Failure, T>(rows: R[], write: (rows: R[]) => Promise<T>): Promise<{ written: R[]; returned: T[]; left: R[] }> {
    const written: R[] = [];
    const returned: T[] = [];
    if (rows.length === 0) return { written, returned, left: [] };
    let refusal: unknown;
    try {
      return { written: rows, returned: [await this.attempt(() => write(rows))], left: [] };
    } catch (err) {
      if (!isDataError(err)) {
        this.fault(err);
        return { written, returned, left: rows };
      }
      refusal = err;
    }
    if (rows.length > 1) this.log.warn({ err: refusal, rows: rows.length }, 'the database refused a write of delivery results for what a row holds: writing them one at a time');
    for (const [i, row] of rows.entries()) {
      try {
        // A lone row's refusal is known already: it is not tried again as it was.
        returned.push(await (rows.length > 1 ? this.writeRow(row, write) : this.writeFixed(row, refusal, write)));
        written.push(row);
      } catch (err) {
        this.fault(err);
        return { written, returned, left: rows.slice(i) };
      }
    }
    return { written, returned, left: [] };
  }

  /** Writes one row; refused for what it holds, with the fixed text instead. */
  private async writeRow<R extends Retry | Failure, T>(row: R, write: (rows: R[]) => Promise<T>): Promise<T> {
    try {
      return await this.attempt(() => write([row]));
    } catch (err) {
      if (!isDataError(err)) throw err;
      return this.writeFixed(row, err, write);
    }
  }

  /** Writes a row the database refused for what it holds with a fixed text naming the refusal; logs what it held. */
  private async writeFixed<R extends Retry | Failure, T>(row: R, refusal: unknown, write: (rows: R[]) => Promise<T>): Promise<T> {
    const code = (refusal as { code: string }).code;
    const returned = await this.attempt(() => write([{ ...row, error: `(the reply could not be stored: SQLSTATE ${code})` }]));
    this.log.child({ outboxId: row.id, attempt: row.row.attempts + 1 }).error(
      { err: refusal, recipient: row.row.recipient, error: row.error },
      'the database refused the result of a copy for what its error text holds: recorded with a fixed text instead',
    );
    return returned;
  }

  /** Runs a write, again on a fresh connection when the connection was lost; throws what it finally failed with. */
  private async attempt<T>(write: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await write();
      } catch (err) {
        if (isConnectionLoss(err) && attempt < RETRY_MS.length) {
          await new Promise((r) => setTimeout(r, RETRY_MS[attempt]));
          continue;
        }
        throw err;
      }
    }
  }

  /** A write failed for a reason that is not a row's: its results are kept, and nothing more is sent until they are written. */
  private fault(err: unknown) {
    this.error ??= err;
    this.log.error({ err }, 'could not record delivery results; they are kept and written before anything more is sent');
  }

  private keep(sent: ClaimedId[], retry: Retry[], failed: Failure[]) {
    this.sent.unshift(...sent);
    this.retry.unshift(...retry);
    this.failed.unshift(...failed);
  }
}
