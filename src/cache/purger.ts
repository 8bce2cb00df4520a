/*
 * The purger (worker role): sends the purge queue (sql/0055, db/purges.ts) to the cache in front of
 * the archive. Claims due rows with SKIP LOCKED (any number of workers share the queue), sends
 * their distinct keys in as few requests as fit (purge-request.ts), sends the rows the cache
 * confirmed once more RESEND_SECONDS later and then deletes them, and puts the others back with
 * backoff: a cache that is down or slow gets its purges
 * when it is back, in order, after a restart of either side too. Woken by NOTIFY from the
 * triggers, and polls as the guarantee.
 *
 * Without PURGE_URL there is nothing to purge: it turns the triggers' queuing off (purge_switch)
 * and drops what they queued before.
 */

import crypto from 'node:crypto';
import os from 'node:os';
import type pg from 'pg';
import type { Config } from '../config.ts';
import { Listener } from '../db/listener.ts';
import { waitsOut } from '../db/pg-errors.ts';
import { claimPurges, confirmPurges, discardPurges, PURGE_CHANNEL, releasePurges, retryPurges, setPurging, type ClaimedPurge } from '../db/purges.ts';
import { log as rootLog, redactUrl, type Logger } from '../log.ts';
import { RepeatedFailures } from '../repeated-failures.ts';
import { purgeKeys } from '../metrics.ts';
import { purgeChunks, sendPurge } from './purge-request.ts';

/** Rows claimed per round (their duplicates come along). */
const BATCH = 500;
/** A claim older than this is a dead purger's; longer than a round of a few requests can take. */
const LEASE_SECONDS = 120;
const POLL_MS = 2_000;
/** Without PURGE_URL the queue is emptied this often. */
const DISCARD_MS = 60_000;
/**
 * Each key is sent again this long after the cache confirmed it (sql/0069): longer than a page
 * takes to render and than a replica on the same network lags (web/fresh-reads.ts), so a page
 * rendered from the data before the change, and stored by the cache after the first purge, goes.
 */
const RESEND_SECONDS = 10;

export interface PurgerOptions {
  name?: string;
  pollMs?: number;
  resendSeconds?: number;
}

export class Purger {
  readonly name: string;
  private readonly log: Logger;
  private readonly failures: RepeatedFailures;
  private notifier: Listener | null = null;
  private running: Promise<void> | null = null;
  private stopping = false;
  private pending = true;
  /** whether the purge switch follows PURGE_URL yet (setSwitch) */
  private switched = false;
  private wake: (() => void) | null = null;
  private readonly pollMs: number;
  private readonly resendSeconds: number;
  /** cuts the request in flight when stopping: its rows go back untried */
  private readonly cut = new AbortController();

  constructor(private readonly pool: pg.Pool, private readonly listenUrl: string, private readonly cfg: Config['purge'], opts: PurgerOptions = {}) {
    this.name = opts.name ?? `${os.hostname()}:${process.pid}:${crypto.randomBytes(3).toString('hex')}`;
    this.log = rootLog.child({ purger: this.name });
    this.failures = new RepeatedFailures(this.log);
    this.pollMs = opts.pollMs ?? (cfg.url ? POLL_MS : DISCARD_MS);
    this.resendSeconds = opts.resendSeconds ?? RESEND_SECONDS;
  }

  async start(): Promise<void> {
    // Every worker of a site shares its configuration: the switch follows PURGE_URL. A database
    // that takes no writes just now does not stop serve: the loop sets it once it can.
    await this.setSwitch().catch((err) => {
      if (!waitsOut(err)) throw err;
      this.log.warn({ err }, 'the purge switch could not be set at start; set once the database takes writes');
    });
    if (this.cfg.url) {
      this.notifier = new Listener(this.listenUrl, [PURGE_CHANNEL], () => this.poke(), () => this.poke(), this.log, this.failures);
      await this.notifier.start();
    }
    this.running = this.loop();
    this.log.info({ url: this.cfg.url ? redactUrl(this.cfg.url) : null }, this.cfg.url ? 'purger started' : 'no PURGE_URL: queued purges are dropped');
  }

  private async setSwitch(): Promise<void> {
    await setPurging(this.pool, Boolean(this.cfg.url));
    this.switched = true;
  }

  /** Stops now: a request in flight is cut and its rows go back to the queue untried. Idempotent. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.cut.abort();
    this.wake?.();
    await this.running;
    await this.notifier?.stop();
    this.notifier = null;
    this.failures.stop();
  }

  private poke() {
    this.pending = true;
    this.wake?.();
  }

  private async loop() {
    while (!this.stopping) {
      let more = false;
      try {
        if (!this.switched) await this.setSwitch();
        if (this.cfg.url) more = await this.round(this.cfg.url);
        else await discardPurges(this.pool);
        this.failures.ok('round');
      } catch (err) {
        this.failures.failed('round', err, 'purge round failed', {}, 'warn');
      }
      if (this.stopping) break;
      if (more) continue;
      if (!this.pending) await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.pollMs);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = null;
      this.pending = false;
    }
  }

  /** One claim and its requests; whether a full batch was claimed (more may be due). */
  private async round(url: string): Promise<boolean> {
    this.pending = false;
    const rows = await claimPurges(this.pool, this.name, BATCH, LEASE_SECONDS);
    if (rows.length === 0) return false;
    const byKey = new Map<string, ClaimedPurge[]>();
    for (const r of rows) byKey.set(r.key, [...(byKey.get(r.key) ?? []), r]);
    const chunks = purgeChunks([...byKey.keys()].sort());
    const idsOf = (keys: string[]) => keys.flatMap((k) => byKey.get(k)!.map((r) => r.id));
    for (const [i, keys] of chunks.entries()) {
      const ids = idsOf(keys);
      // Stopping: this chunk and the rest go back as they were, for the next worker.
      if (this.stopping) {
        await releasePurges(this.pool, idsOf(chunks.slice(i).flat()));
        break;
      }
      try {
        await sendPurge(url, keys, this.cfg.timeoutMs, this.cut.signal);
        await confirmPurges(this.pool, ids, this.resendSeconds);
        purgeKeys.inc({ result: 'sent' }, keys.length);
        this.log.debug({ keys }, 'purged');
        this.failures.ok('request');
      } catch (err) {
        if (this.stopping) {
          await releasePurges(this.pool, idsOf(chunks.slice(i).flat()));
          break;
        }
        const message = (err as Error).message;
        await retryPurges(this.pool, ids, message);
        purgeKeys.inc({ result: 'failed' }, keys.length);
        // A cache down for an hour: said when it starts, summed up, and when it answers again.
        this.failures.failed('request', err, 'purge failed; queued again', { keys: keys.length }, 'warn');
      }
    }
    return rows.length >= BATCH;
  }
}

/** Starts the purger beside the delivery worker (`listkeeper serve --worker`). */
export async function startPurger(pool: pg.Pool, listenUrl: string, cfg: Config): Promise<{ name: string; stop(): Promise<void> }> {
  const purger = new Purger(pool, listenUrl, cfg.purge);
  await purger.start();
  return { name: 'purger', stop: () => purger.stop() };
}
