/*
 * One delivery worker: claims a batch of due outbox rows (FOR UPDATE SKIP LOCKED, so any number
 * of workers on any number of machines share the queue), sends each copy, and records the
 * outcome in bulk: one UPDATE for the delivered rows, one for the deferred, one for the failed.
 * Only one batch is in flight: a worker killed mid-batch leaves at most that batch to be sent
 * again.
 *
 * Liveness: the worker holds a session advisory lock for its life (worker-lock.ts), so its rows
 * go back to the queue as soon as its process or connection dies. Its heartbeat renews the lease
 * of each row it holds whose send is within its own deadline; a row whose send is stuck past it
 * goes back after the lease, alone. A worker whose every lane is stuck beats no more, so all its
 * rows go back after the lease.
 */

import crypto from 'node:crypto';
import os from 'node:os';
import type pg from 'pg';
import type { Config } from '../config.ts';
import { DatabaseClock } from '../db/database-clock.ts';
import { claimBatch, heartbeat, OUTBOX_CHANNEL, releaseRows, removeWorker, type ClaimedRow, type WorkerIdentity } from '../db/outbox.ts';
import { waitsOut } from '../db/pg-errors.ts';
import { log as rootLog, redactUrl, type Logger } from '../log.ts';
import { RepeatedFailures } from '../repeated-failures.ts';
import { runConversions } from '../core/conversions.ts';
import { CopyCache } from './copies.ts';
import { HostLanes } from './host-lanes.ts';
import { HostSpeeds } from './host-speeds.ts';
import { hourly, periodic, reclaim } from './maintenance.ts';
import { claimChoreRun } from '../db/chore-runs.ts';
import { Listener } from '../db/listener.ts';
import { Outcomes } from './outcomes.ts';
import { createTransport, poolTimeouts, type SendClock, type Transport } from './transport.ts';
import { WorkerLock } from './worker-lock.ts';

export interface WorkerOptions {
  name?: string;
  transport?: Transport;
}

/** Sends still in flight this long after SIGTERM are cut, so that stopping takes seconds. */
const STOP_GRACE_MS = 4_000;
/** A send is cut at its deadline and returns a moment later: past it by this much, it is stuck. */
const DEADLINE_SLACK_MS = 1_000;
/** a skew between this machine's clock and the database's worth telling the operator about */
const CLOCK_SKEW_WARN_MS = 30_000;

export class DeliveryWorker {
  readonly name: string;
  private readonly log: Logger;
  private readonly transport: Transport;
  private readonly copies: CopyCache;
  private readonly lock: WorkerLock;
  private notifier: Listener | null = null;
  private running: Promise<void> | null = null;
  private stopped: Promise<void> | null = null;
  private stopping = false;
  private pending = false;
  private wake: (() => void) | null = null;
  private timers: NodeJS.Timeout[] = [];
  // Separate chains: the heartbeat never waits behind a slow chore (a digest run), nor the
  // reverse; a conversion job (minutes of batches) holds up neither.
  private chains = { beat: Promise.resolve(), chores: Promise.resolve(), conversions: Promise.resolve() };
  /** copies being built or sent now, and the time by which each must have ended (the heartbeat's proof), with its row */
  private inFlight = 0;
  private readonly clocks = new Map<SendClock, number>();
  /** the rows whose send was last found stuck past its deadline (logged once each) */
  private stuck = new Set<number>();
  /** during a round: wakes its idle lanes (`news`: copies were queued, look for them) */
  private pumpWake: ((news?: boolean) => void) | null = null;
  /** during a round, direct delivery: takes out of its batch the copies whose host's lanes are all stuck (HostLanes.dropBlocked) */
  private pumpBlocked: ((stuck: Set<number>) => number[]) | null = null;
  private stalled = false;
  /** whether firstBeat() has run: the worker claims nothing before */
  private beaten = false;
  /** results of sent copies, kept across rounds until the database has them (outcomes.ts) */
  private readonly outcomes: Outcomes;
  /** claimed rows that could not be given back (the database was away): given back next round */
  private orphans: number[] = [];
  /** each loop's failures, logged once as they start, summed up, and when they end */
  private readonly failures: RepeatedFailures;
  /** the database's clock, read at every heartbeat: signatures' t= comes from it, not from this machine's */
  private readonly clock = new DatabaseClock();
  /** whether the skew was last logged as too large (logged when it starts and when it ends) */
  private skewed = false;
  /** which MX hosts answered quickly or slowly lately, across rounds (host-speeds.ts) */
  private readonly speeds: HostSpeeds;
  /** when copies were last deferred because slow hosts held half the lanes (logged once a minute) */
  private slowWarnedAt = -Infinity;

  constructor(private readonly pool: pg.Pool, private readonly url: string, private readonly cfg: Config, opts: WorkerOptions = {}) {
    this.name = opts.name ?? `${os.hostname()}:${process.pid}:${crypto.randomBytes(3).toString('hex')}`;
    this.log = rootLog.child({ worker: this.name });
    this.failures = new RepeatedFailures(this.log);
    this.transport = opts.transport ?? createTransport(cfg, this.log);
    this.copies = new CopyCache(cfg.publicUrl, this.log, this.clock, cfg.heloName);
    this.lock = new WorkerLock(url, cfg.delivery.leaseSeconds, this.log, (held) => held && this.poke(), this.failures);
    this.speeds = new HostSpeeds(cfg.delivery.timeoutSeconds * 1000);
    this.outcomes = new Outcomes(pool, this.name, cfg.delivery.giveUpHours, Math.max(1, Math.floor(cfg.delivery.batchSize / 4)), this.log, cfg.publicUrl);
  }

  /** The key of the session lock that says this worker is alive (sql/0020). */
  get lockKey(): number | null {
    return this.lock.key;
  }

  get holdsLock(): boolean {
    return this.lock.held;
  }

  async start(): Promise<void> {
    const key = await this.lock.start();
    if (this.lock.held) {
      await this.firstBeat().catch((err) => {
        if (!waitsOut(err)) throw err;
        this.log.warn({ err }, 'delivery worker started without its first heartbeat: it claims nothing until it has beaten');
      });
    }
    // Woken by NOTIFY, and after every reconnection: anything queued while away is looked at now.
    this.notifier = new Listener(this.url, [OUTBOX_CHANNEL], () => this.poke(), () => this.poke(), this.log, this.failures);
    await this.notifier.start();
    const lease = this.cfg.delivery.leaseSeconds * 1000;
    this.every('beat', 'heartbeat', Math.max(200, Math.floor(lease / 3)), async () => {
      await this.beat();
      // Never its own rows while it moves: they are in flight, even while its lock connection is
      // being reopened (others will take them then, as they must). A stalled worker gives them back.
      await reclaim(this.pool, this.cfg, this.log, this.stalled ? null : this.name);
      // After the heartbeat, never in its way; a failed read keeps the last skew (the heartbeat's
      // own failure is what says the database is away).
      await this.readClock().catch(() => undefined);
    });
    this.every('chores', 'chores', Math.min(10_000, Math.max(500, this.cfg.delivery.pollMs)), () => periodic(this.pool, this.cfg, this.log, this.failures));
    // The hourly chores, for the whole fleet: asked often, run when an hour has passed since any
    // worker last ran them (db/chore-runs.ts). A timer of an hour from each start never fired in a
    // fleet restarted more often than that.
    this.every('chores', 'hourly chores', Math.min(60_000, Math.max(1_000, this.cfg.delivery.pollMs * 10)), async () => {
      if (await claimChoreRun(this.pool, 'hourly', 3600)) await hourly(this.pool, this.cfg, this.log, this.failures);
    });
    this.every('conversions', 'conversions', Math.min(10_000, Math.max(500, this.cfg.delivery.pollMs)), () =>
      runConversions(this.pool, this.name, this.cfg.conversions, this.log, () => this.stopping, undefined, this.failures));
    this.running = this.loop();
    this.log.info({ relay: this.cfg.relayUrl ? redactUrl(this.cfg.relayUrl) : 'direct MX', tls: this.cfg.relayUrl ? this.cfg.relayTls : 'opportunistic', lockKey: key }, 'delivery worker started');
  }

  /**
   * The first heartbeat, then the rows of workers that died (their lock is free) put back in the
   * queue now rather than after their lease. Nothing is claimed before it: another worker's reclaim
   * takes the rows of a worker it has never seen beat, and the heartbeat names the lock it holds. A
   * database that takes no writes at start (a standby not yet promoted, a full disk) does not stop
   * serve: the loop, once the lock is held, tries again until it does.
   */
  private async firstBeat(): Promise<void> {
    await this.readClock();
    await heartbeat(this.pool, this.identity());
    await reclaim(this.pool, this.cfg, this.log);
    this.beaten = true;
  }

  /**
   * Stops claiming, lets the sends in flight finish for a few seconds, then cuts the rest (their
   * sockets destroyed, whatever the relay is doing); every claimed row not sent goes back to the
   * queue untouched. Idempotent.
   */
  stop(): Promise<void> {
    this.stopped ??= this.shutdown();
    return this.stopped;
  }

  private async shutdown(): Promise<void> {
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    this.wake?.();
    this.outcomes.interrupt();
    let grace: NodeJS.Timeout | undefined;
    const late = await Promise.race([
      (this.running ?? Promise.resolve()).then(() => false),
      new Promise<boolean>((resolve) => (grace = setTimeout(() => resolve(true), STOP_GRACE_MS))),
    ]);
    clearTimeout(grace);
    if (late) {
      this.log.warn({ inFlight: this.inFlight }, 'sends still in flight at shutdown are cut; their rows go back to the queue');
      this.transport.abort();
      await this.running;
    }
    this.transport.close();
    await Promise.all([this.chains.beat, this.chains.chores, this.chains.conversions]).catch(() => undefined);
    await this.notifier?.stop();
    await removeWorker(this.pool, this.name).catch((err) => this.log.warn({ err }, 'could not deregister worker'));
    await this.lock.stop();
    this.failures.stop();
    this.log.info('delivery worker stopped');
  }

  /**
   * The heartbeat says "this worker is moving", and renews the lease of each row it holds whose
   * send is within its own deadline (a send waiting minutes for the reply to its final dot is; its
   * row must not go to another worker, which would send it again). A send past its deadline that
   * has not returned is stuck: its row's lease is not renewed, and it goes back to the queue after
   * the lease (reclaimStale), alone; the other lanes go on. When every lane is stuck, the worker
   * itself is: it stops beating, and all its rows go back after the lease, though its lock is held.
   */
  private async beat() {
    const now = performance.now();
    const late = new Set<number>();
    const moving = new Set<number>();
    let lateLanes = 0;
    let overdue = 0;
    for (const [c, id] of this.clocks) {
      if (c.waiting || c.at + DEADLINE_SLACK_MS > now) {
        moving.add(id);
        continue;
      }
      late.add(id);
      lateLanes++;
      overdue = Math.max(overdue, now - c.at);
    }
    // A row taken back and claimed again by this worker, now on a lane that moves, is renewed.
    for (const id of moving) late.delete(id);
    for (const id of late) {
      if (!this.stuck.has(id)) this.log.child({ outboxId: id }).error({ inFlight: this.inFlight, seconds: Math.round(overdue / 1000) }, "a copy in flight is past its deadline: its row's lease is no longer renewed, so it goes back to the queue");
    }
    for (const id of this.stuck) if (!late.has(id)) this.log.child({ outboxId: id }).warn('a copy that was past its deadline has ended');
    this.stuck = late;
    if (lateLanes > 0 && lateLanes >= this.transport.lanes) {
      if (!this.stalled) this.log.error({ inFlight: this.inFlight, late: lateLanes }, 'every lane is past its deadline: heartbeat withheld, so the rows this worker holds go back to the queue');
      this.stalled = true;
      return;
    }
    if (this.stalled) this.log.warn('a lane is within its deadline again: heartbeat resumed');
    this.stalled = false;
    // Copies waiting in the batch for a host whose every lane is stuck would wait for ever: they
    // were never sent, so they go back to the queue untouched, for another worker.
    const blocked = late.size > 0 ? (this.pumpBlocked?.(late) ?? []) : [];
    if (blocked.length > 0) {
      this.log.warn({ rows: blocked.length }, "copies waiting for a host whose every lane is stuck go back to the queue");
      this.orphans.push(...blocked);
    }
    await heartbeat(this.pool, this.identity(), [...late, ...this.orphans]);
    if (blocked.length > 0) {
      await releaseRows(this.pool, blocked, this.name);
      this.orphans = this.orphans.filter((id) => !blocked.includes(id));
    }
  }

  /** Measures this machine's clock against the database's; a skew past CLOCK_SKEW_WARN_MS is logged as it starts and ends. */
  private async readClock(): Promise<void> {
    const skew = await this.clock.measure(this.pool);
    const off = Math.abs(skew) > CLOCK_SKEW_WARN_MS;
    if (off && !this.skewed) this.log.warn({ skewSeconds: Math.round(skew / 1000) }, "this machine's clock is off the database's: the list's signatures take the database's time; fix the machine's time service (NTP)");
    else if (!off && this.skewed) this.log.info({ skewSeconds: Math.round(skew / 1000) }, "this machine's clock agrees with the database's again");
    this.skewed = off;
  }

  private identity(): WorkerIdentity {
    return { name: this.name, host: os.hostname(), pid: process.pid, lockKey: this.lock.key, leaseSeconds: this.cfg.delivery.leaseSeconds };
  }

  private poke() {
    this.pending = true;
    this.wake?.();
    this.pumpWake?.(true);
  }

  private every(chain: keyof DeliveryWorker['chains'], name: string, ms: number, task: () => Promise<void>) {
    let queued = false;
    const t = setInterval(() => {
      // Tasks of one chain run one at a time; a task still waiting its turn is not queued twice.
      if (this.stopping || queued) return;
      queued = true;
      this.chains[chain] = this.chains[chain]
        .then(() => {
          queued = false;
          return task();
        })
        .then(
          () => this.failures.ok(name),
          (err) => this.failures.failed(name, err, 'delivery maintenance failed', { task: name }),
        );
    }, ms);
    t.unref();
    this.timers.push(t);
  }

  private async loop() {
    while (!this.stopping) {
      this.pending = false;
      if (!this.lock.held) {
        // Without its lock, others may already be re-sending this worker's rows: claim nothing.
        await this.sleep(this.cfg.delivery.pollMs);
        continue;
      }
      try {
        if (!this.beaten) await this.firstBeat();
        // What the last round could not write or give back goes first; nothing new before it.
        await this.settle();
        await this.pump();
        this.failures.ok('batch');
      } catch (err) {
        this.failures.failed('batch', err, 'delivery batch failed');
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

  /** Writes the results and gives back the rows a previous round left with the worker. */
  private async settle(): Promise<void> {
    await this.outcomes.finish();
    if (this.orphans.length > 0) {
      await releaseRows(this.pool, this.orphans, this.name);
      this.orphans = [];
    }
  }

  /**
   * Claims and sends until nothing is due; returns how many rows it handled. Claims overlap
   * with sending: the next batch is claimed while the last half of this one goes out, and
   * results are recorded as they come, so lanes rarely wait for the database. Copies sent but
   * not yet recorded, with those in flight, never pass the batch size (outcomes.room()): that is
   * all a crash can send twice.
   */
  async pump(): Promise<number> {
    const batch = this.cfg.delivery.batchSize;
    const buffer: ClaimedRow[] = [];
    const outcomes = this.outcomes;
    let exhausted = false;
    let claiming: Promise<void> | null = null;
    let claimError: unknown = null;
    let handled = 0;
    // Rows claimed but not sent because delivery is stopping: back to the queue untouched.
    const unsent: number[] = [];
    let freed: { promise: Promise<void>; resolve: () => void } | null = null;
    // Idle lanes look for new copies at a NOTIFY, or a poll after the last claim, not at every send's end.
    let news = false;
    let lastClaim = performance.now();
    const wake = (queued = false) => {
      news ||= queued;
      freed?.resolve();
      freed = null;
    };
    this.pumpWake = wake;
    /** Resolves at the next wake(): a send's end, a host's lookup, a NOTIFY. */
    const untilWoken = (): Promise<void> => {
      if (!freed) {
        let resolve!: () => void;
        freed = { promise: new Promise<void>((r) => (resolve = r)), resolve };
      }
      return freed.promise;
    };
    // Direct delivery: sends in flight by MX host, and hosts not known to answer quickly on half
    // the lanes at most (host-lanes.ts). A relay is one host: its copies go in claim order, as
    // they always did.
    const perHost = this.transport.domainLanes;
    const hostKey = (domain: string) => (this.transport.laneKey?.(domain) ?? Promise.resolve(domain)).catch(() => domain);
    const slowLanes = Math.max(1, Math.floor(this.transport.lanes / 2));
    const hosts = perHost === undefined ? null : new HostLanes(perHost, hostKey, wake, { speeds: this.speeds, lanes: slowLanes });
    if (hosts) this.pumpBlocked = (stuck) => hosts.dropBlocked(buffer, stuck).map((r) => r.id);
    const refill = () => {
      if (claiming || exhausted || this.stopping || !this.lock.held) return;
      lastClaim = performance.now();
      claiming = (async () => {
        const { rows, cancelled } = await claimBatch(this.pool, this.name, batch);
        if (rows.length + cancelled < batch) exhausted = true;
        if (cancelled > 0) this.log.info({ rows: cancelled }, 'queued copies cancelled: their member left or paused delivery, or the post was hidden');
        if (rows.length === 0) return;
        try {
          await this.copies.prepare(this.pool, rows);
        } catch (err) {
          // Claimed, and ours while this worker lives (reclaimStale spares a live worker's rows):
          // given back with the unsent ones, or they stayed `sending` until the process ended.
          unsent.push(...rows.map((r) => r.id));
          throw err;
        }
        // Batched by recipient domain: consecutive sends share a destination and its connections.
        rows.sort((a, b) => (a.domain < b.domain ? -1 : a.domain > b.domain ? 1 : a.id - b.id));
        buffer.push(...rows);
        handled += rows.length + cancelled;
        hosts?.lookUp(buffer);
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
        await outcomes.room(batch, () => this.inFlight);
        const halted = this.stopping || !this.lock.held || outcomes.failing;
        const row = halted ? undefined : hosts ? hosts.take(buffer) : buffer.shift();
        const deferrals = hosts?.deferrals() ?? [];
        for (const d of deferrals) outcomes.deferred(d.row, d.reason);
        if (deferrals.length > 0 && performance.now() - this.slowWarnedAt >= 60_000) {
          this.slowWarnedAt = performance.now();
          this.log.warn({ rows: deferrals.length, lanes: slowLanes, reason: deferrals[0].reason }, 'slow MX hosts hold half the lanes: copies for hosts not known to answer quickly are deferred');
        }
        if (!row) {
          if (claiming && !halted && buffer.length === 0) {
            await claiming;
            continue;
          }
          // Buffered copies all wait (for a host at its limit, or its lookup), or nothing is left to
          // send while other lanes still are: wait for a send's end, a lookup, a claim, a NOTIFY or
          // the poll, and at a NOTIFY or the poll look for new copies rather than end the round.
          // Otherwise one slow receiver (a reply to the final dot may take
          // DELIVERY_DATA_DONE_TIMEOUT_SECONDS) held back every copy queued meanwhile; and so did
          // a busy host's copies waiting in the batch, until the last of them had a lane.
          if (!halted && (buffer.length > 0 || this.inFlight > 0)) {
            let timer: NodeJS.Timeout | undefined;
            await Promise.race([untilWoken(), ...(claiming ? [claiming] : []), new Promise<void>((r) => (timer = setTimeout(r, this.cfg.delivery.pollMs)))]);
            clearTimeout(timer);
            if (news || performance.now() - lastClaim >= this.cfg.delivery.pollMs) {
              news = false;
              exhausted = false;
            }
            continue;
          }
          return;
        }
        try {
          if (!(await this.deliver(row, outcomes))) unsent.push(row.id);
        } finally {
          hosts?.done(row);
          // A send's end may leave the idle lanes with nothing in flight: they end the round.
          wake();
        }
      }
    };
    try {
      refill();
      await claiming;
      await Promise.all(Array.from({ length: this.transport.lanes }, lane));
    } finally {
      this.pumpWake = null;
      this.pumpBlocked = null;
      hosts?.close();
      const back = [...unsent, ...buffer.splice(0).map((r) => r.id)];
      await outcomes.finish().finally(() => releaseRows(this.pool, back, this.name).catch((err) => {
        this.orphans.push(...back);
        throw err;
      }));
    }
    if (claimError) throw claimError;
    return handled;
  }

  /** Sends one copy and notes the outcome; false when the send was cut by shutdown (row untouched). */
  private async deliver(row: ClaimedRow, outcomes: Outcomes): Promise<boolean> {
    this.inFlight++;
    // Building the copy reads the database: it gets the lease, as every copy did before.
    const clock: SendClock = { at: performance.now() + this.cfg.delivery.leaseSeconds * 1000, waiting: false };
    this.clocks.set(clock, row.id);
    try {
      let raw: Buffer | null;
      try {
        raw = await this.copies.copy(this.pool, row);
      } catch (err) {
        this.log.child({ outboxId: row.id }).error({ err }, 'could not build the copy');
        outcomes.deferred(row, `could not build the copy: ${(err as Error).message}`);
        return true;
      }
      if (!raw) {
        outcomes.failedFor(row, 'the message or list no longer exists', 'none');
        return true;
      }
      // Built only for a server without 8BITMIME: converted before the list signs it.
      const sevenBit = () => this.copies.copy(this.pool, row, { sevenBit: true });
      // The copy's deadline before its message is handed over; the transport moves it on after.
      clock.at = performance.now() + poolTimeouts(this.cfg).copyMs;
      const result = await this.transport.send(row.domain, { from: row.envelope_from, to: row.recipient }, raw, sevenBit, clock);
      if (result.ok) outcomes.delivered(row);
      else if (result.aborted) return false;
      else if (result.temporary) outcomes.deferred(row, result.response);
      else outcomes.failedFor(row, result.response, result.stage);
      return true;
    } finally {
      this.inFlight--;
      this.clocks.delete(clock);
    }
  }
}
