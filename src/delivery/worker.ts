import crypto from 'node:crypto';
import os from 'node:os';
import type pg from 'pg';
import { recordDeliveryFailure } from '../bounces.ts';
import type { Config } from '../config.ts';
import { claimBatch, heartbeat, markFailed, markRetry, markSent, OUTBOX_CHANNEL, removeWorker, type ClaimedRow, type RowError } from '../db/outbox.ts';
import { log as rootLog, type Logger } from '../log.ts';
import { BatchCopies } from './copies.ts';
import { hourly, periodic, reclaim } from './maintenance.ts';
import { deliveries } from './metrics.ts';
import { Notifier } from './notifier.ts';
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
  private notifier: Notifier | null = null;
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
  }

  async start(): Promise<void> {
    await heartbeat(this.pool, this.name, os.hostname(), process.pid);
    await reclaim(this.pool, this.cfg, this.log);
    this.notifier = new Notifier(this.url, OUTBOX_CHANNEL, () => this.poke(), this.log);
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
    const t = setInterval(() => {
      if (this.stopping) return;
      // Chores run one at a time, never overlapping themselves.
      this.chores = this.chores.then(task).catch((err) => this.log.error({ err }, 'delivery maintenance failed'));
    }, ms);
    t.unref();
    this.timers.push(t);
  }

  private async loop() {
    while (!this.stopping) {
      this.pending = false;
      let n = 0;
      try {
        n = await this.runOnce();
      } catch (err) {
        this.log.error({ err }, 'delivery batch failed');
        await this.sleep(1000);
        continue;
      }
      if (n >= this.cfg.delivery.batchSize || this.pending) continue;
      await this.sleep(this.cfg.delivery.pollMs);
    }
  }

  private sleep(ms: number): Promise<void> {
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

  /** Claims and sends one batch; returns how many rows it claimed. */
  async runOnce(): Promise<number> {
    const rows = await claimBatch(this.pool, this.name, this.cfg.delivery.batchSize);
    if (rows.length === 0) return 0;
    const copies = await BatchCopies.load(this.pool, rows, this.cfg.publicUrl, this.log);
    // Batched by recipient domain: consecutive sends share a destination and its connections.
    rows.sort((a, b) => (a.domain < b.domain ? -1 : a.domain > b.domain ? 1 : a.id - b.id));
    const sent: number[] = [];
    const retry: RowError[] = [];
    const failed: (RowError & { row: ClaimedRow })[] = [];
    let next = 0;
    const lane = async () => {
      while (next < rows.length) {
        const row = rows[next++];
        const raw = await copies.copy(row);
        if (!raw) {
          failed.push({ id: row.id, error: 'the message or list no longer exists', row });
          continue;
        }
        const result = await this.transport.send(row.domain, { from: row.envelope_from, to: row.recipient }, raw);
        if (result.ok) sent.push(row.id);
        else if (result.temporary) retry.push({ id: row.id, error: result.response });
        else failed.push({ id: row.id, error: result.response, row });
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.transport.lanes, rows.length) }, lane));

    await markSent(this.pool, sent);
    const gaveUp = await markRetry(this.pool, retry, this.cfg.delivery.giveUpHours);
    await markFailed(this.pool, failed);
    deliveries.inc({ result: 'sent' }, sent.length);
    deliveries.inc({ result: 'deferred' }, retry.length - gaveUp.length);
    deliveries.inc({ result: 'failed' }, failed.length + gaveUp.length);
    for (const f of failed) {
      const log = this.log.child({ outboxId: f.row.id, attempt: f.row.attempts + 1 });
      log.warn({ recipient: f.row.recipient, error: f.error }, 'delivery failed permanently');
      if (f.row.member_id !== null && f.row.list_id !== null && f.row.kind !== 'notice') {
        await recordDeliveryFailure(this.pool, f.row.member_id, f.row.list_id, f.row.recipient, f.error, log);
      }
    }
    for (const r of retry) this.log.child({ outboxId: r.id }).info({ error: r.error, gaveUp: gaveUp.includes(r.id) }, gaveUp.includes(r.id) ? 'delivery given up' : 'delivery deferred');
    return rows.length;
  }
}
