import crypto from 'node:crypto';
import os from 'node:os';
import type pg from 'pg';
import type { Config } from '../config.ts';
import { claimBatch, heartbeat, OUTBOX_CHANNEL, releaseRows, removeWorker, type ClaimedRow } from '../db/outbox.ts';
import { log as rootLog, type Logger } from '../log.ts';
import { CopyCache } from './copies.ts';
import { hourly, periodic, reclaim } from './maintenance.ts';
import { Listener } from '../db/listener.ts';
import { Outcomes } from './outcomes.ts';
import { createTransport, type Transport } from './transport.ts';

/**
 * One delivery worker: claims a batch of due outbox rows (FOR UPDATE SKIP LOCKED, so any number
 * of workers on any number of machines share the queue), sends each copy, and records the
 * outcome in bulk: one UPDATE for the delivered rows, one for the deferred, one for the failed.
 * Only one batch is in flight: a worker killed mid-batch leaves at most that batch to be sent
 * again once its heartbeat goes stale.
 */
export interface WorkerOptions {
  name?: string;
  transport?: Transport;
}

export class DeliveryWorker {
  readonly name: string;
  private readonly log: Logger;
  private readonly transport: Transport;
  private readonly copies: CopyCache;
  private notifier: Listener | null = null;
  private running: Promise<void> | null = null;
  private stopping = false;
  private pending = false;
  private wake: (() => void) | null = null;
  private timers: NodeJS.Timeout[] = [];
  private chores: Promise<void> = Promise.resolve();

  constructor(private readonly pool: pg.Pool, private readonly url: string, private readonly cfg: Config, opts: WorkerOptions = {}) {
    this.name = opts.name ?? `${os.hostname()}:${process.pid}:${crypto.randomBytes(3).toString('hex')}`;
    this.log = rootLog.child({ worker: this.name });
    this.transport = opts.transport ?? createTransport(cfg, this.log);
    this.copies = new CopyCache(cfg.publicUrl, this.log);
  }

  async start(): Promise<void> {
    await heartbeat(this.pool, this.name, os.hostname(), process.pid);
    await reclaim(this.pool, this.cfg, this.log);
    // Woken by NOTIFY, and after every reconnection: anything queued while away is looked at now.
    this.notifier = new Listener(this.url, [OUTBOX_CHANNEL], () => this.poke(), () => this.poke(), this.log);
    await this.notifier.start();
    const lease = this.cfg.delivery.leaseSeconds * 1000;
    this.every(Math.max(200, Math.floor(lease / 3)), async () => {
      await heartbeat(this.pool, this.name, os.hostname(), process.pid);
      await reclaim(this.pool, this.cfg, this.log);
    });
    this.every(Math.min(10_000, Math.max(500, this.cfg.delivery.pollMs)), () => periodic(this.pool, this.cfg, this.log));
    this.every(3_600_000, () => hourly(this.pool, this.cfg, this.log));
    this.running = this.loop();
    this.log.info({ relay: this.cfg.relayUrl ?? 'direct MX' }, 'delivery worker started');
  }

  /** Finishes the batch in flight, then stops. Idempotent. */
  async stop(): Promise<void> {
    if (this.stopping) return this.running ?? undefined;
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    this.wake?.();
    await this.running;
    await this.chores.catch(() => undefined);
    await this.notifier?.stop();
    this.transport.close();
    await removeWorker(this.pool, this.name).catch((err) => this.log.warn({ err }, 'could not deregister worker'));
    this.log.info('delivery worker stopped');
  }

  private poke() {
    this.pending = true;
    this.wake?.();
  }

  private every(ms: number, task: () => Promise<void>) {
    let queued = false;
    const t = setInterval(() => {
      // Chores run one at a time; a chore still waiting its turn is not queued twice.
      if (this.stopping || queued) return;
      queued = true;
      this.chores = this.chores
        .then(() => {
          queued = false;
          return task();
        })
        .catch((err) => this.log.error({ err }, 'delivery maintenance failed'));
    }, ms);
    t.unref();
    this.timers.push(t);
  }

  private async loop() {
    while (!this.stopping) {
      this.pending = false;
      try {
        await this.pump();
      } catch (err) {
        this.log.error({ err }, 'delivery batch failed');
        await this.sleep(1000);
        continue;
      }
      // Work was announced while this round ran: look again at once.
      if (this.pending) continue;
      await this.sleep(this.cfg.delivery.pollMs);
    }
  }

  private sleep(ms: number): Promise<void> {
    if (this.stopping) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.wake = () => {
        this.wake = null;
        done();
      };
    });
  }

  /**
   * Claims and sends until nothing is due; returns how many rows it handled. Claims overlap
   * with sending: the next batch is claimed while the last half of this one goes out, and
   * results are recorded as they come, so lanes rarely wait for the database.
   */
  async pump(): Promise<number> {
    const batch = this.cfg.delivery.batchSize;
    const buffer: ClaimedRow[] = [];
    const outcomes = new Outcomes(this.pool, this.cfg.delivery.giveUpHours, Math.max(1, Math.floor(batch / 4)), this.log);
    let exhausted = false;
    let claiming: Promise<void> | null = null;
    let claimError: unknown = null;
    let handled = 0;
    const refill = () => {
      if (claiming || exhausted || this.stopping) return;
      claiming = (async () => {
        const rows = await claimBatch(this.pool, this.name, batch);
        if (rows.length < batch) exhausted = true;
        if (rows.length === 0) return;
        await this.copies.prepare(this.pool, rows);
        // Batched by recipient domain: consecutive sends share a destination and its connections.
        rows.sort((a, b) => (a.domain < b.domain ? -1 : a.domain > b.domain ? 1 : a.id - b.id));
        buffer.push(...rows);
        handled += rows.length;
      })()
        .catch((err) => {
          claimError ??= err;
          exhausted = true;
        })
        .finally(() => {
          claiming = null;
        });
    };
    const lane = async () => {
      for (;;) {
        if (buffer.length <= batch / 2) refill();
        const row = this.stopping ? undefined : buffer.shift();
        if (!row) {
          if (claiming && !this.stopping) {
            await claiming;
            continue;
          }
          return;
        }
        await this.deliver(row, outcomes);
      }
    };
    try {
      refill();
      await claiming;
      await Promise.all(Array.from({ length: this.transport.lanes }, lane));
    } finally {
      await outcomes.finish().finally(() => releaseRows(this.pool, buffer.splice(0).map((r) => r.id)));
    }
    if (claimError) throw claimError;
    return handled;
  }

  private async deliver(row: ClaimedRow, outcomes: Outcomes) {
    let raw: Buffer | null;
    try {
      raw = await this.copies.copy(this.pool, row);
    } catch (err) {
      this.log.child({ outboxId: row.id }).error({ err }, 'could not build the copy');
      outcomes.deferred(row, `could not build the copy: ${(err as Error).message}`);
      return;
    }
    if (!raw) return outcomes.failedFor(row, 'the message or list no longer exists', 'none');
    const result = await this.transport.send(row.domain, { from: row.envelope_from, to: row.recipient }, raw);
    if (result.ok) outcomes.delivered(row);
    else if (result.temporary) outcomes.deferred(row, result.response);
    else outcomes.failedFor(row, result.response, result.stage);
  }
}
