import pg from 'pg';
import { retakeWorkerLock, takeNewWorkerLock } from '../db/outbox.ts';
import { waitsOut } from '../db/pg-errors.ts';
import { setKeepalives } from '../db/pool.ts';
import type { Logger } from '../log.ts';
import { RepeatedFailures } from '../repeated-failures.ts';

/**
 * The session advisory lock that tells PostgreSQL a delivery worker is alive (sql/0020), held on
 * a dedicated connection (a pooled one would be handed to someone else) for the worker's life.
 * When that connection is lost (its backend terminated, the network cut) `held` turns false at
 * once and the worker claims nothing; the connection is reopened with backoff and the same key
 * taken again. Every wait on it has a deadline.
 */
export class WorkerLock {
  key: number | null = null;
  held = false;
  private client: pg.Client | null = null;
  private stopped = false;
  private retryMs = 250;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly url: string,
    private readonly leaseSeconds: number,
    private readonly log: Logger,
    private readonly onChange: (held: boolean) => void = () => undefined,
    /** the worker's: tries that fail one after another are logged once, and summed up */
    private readonly failures = new RepeatedFailures(log),
  ) {}

  /**
   * Connects and takes a new key. A database fault that passes (waitsOut: the key comes from a
   * sequence, which a database that takes no writes refuses) is tried again with backoff, `held`
   * false meanwhile, and the key null until then; any other failure throws (a worker does not
   * start without it).
   */
  async start(): Promise<number | null> {
    const err = await this.connect(false);
    if (err && waitsOut(err)) {
      this.log.warn({ err }, 'could not take the delivery worker lock at start; trying again, claiming nothing meanwhile');
      this.retry();
    } else if (err) {
      await this.stop();
      throw err;
    }
    return this.key;
  }

  /** Lets the lock go (with its connection); the worker's rows must have been released before. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.held = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const client = this.client;
    this.client = null;
    await client?.end().catch(() => undefined);
  }

  private async connect(retry = true): Promise<Error | null> {
    if (this.stopped) return null;
    const client = new pg.Client({
      connectionString: this.url,
      application_name: `listkeeper:${process.pid}:worker-lock`,
      keepAlive: true,
      connectionTimeoutMillis: 10_000,
      query_timeout: 10_000,
    });
    client.on('error', (err) => this.lost(client, err));
    client.on('end', () => this.lost(client, null));
    this.client = client;
    try {
      await client.connect();
      // The server drops the session (and the lock) of a worker whose machine vanished without
      // closing its connection within about a lease, instead of the system's two hours.
      const idle = Math.max(1, Math.floor(this.leaseSeconds / 2));
      const interval = Math.max(1, Math.floor(this.leaseSeconds / 6));
      await setKeepalives(client, idle, interval);
      const ok = this.key === null ? (this.key = await takeNewWorkerLock(client)) !== null : await retakeWorkerLock(client, this.key);
      if (!ok) throw new Error(`the delivery worker lock ${this.key ?? ''} is held by another session`);
      if (this.stopped || this.client !== client) {
        await client.end().catch(() => undefined);
        return null;
      }
      this.held = true;
      this.retryMs = 250;
      this.onChange(true);
      return null;
    } catch (err) {
      if (this.client === client) this.client = null;
      client.removeAllListeners('end');
      await client.end().catch(() => undefined);
      if (retry) {
        this.failures.failed('lock', err, 'could not take the delivery worker lock; trying again', {}, 'warn');
        this.retry();
      }
      return err as Error;
    }
  }

  private lost(client: pg.Client, err: Error | null) {
    if (this.client !== client) return;
    this.client = null;
    if (this.stopped) return;
    const was = this.held;
    this.held = false;
    if (was) {
      this.log.warn({ err }, 'the delivery worker lost its lock connection: it claims nothing until it holds the lock again');
      this.onChange(false);
    }
    this.retry();
  }

  private retry() {
    if (this.stopped || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.connect().then((err) => {
        if (err || !this.held) return;
        this.failures.ok('lock');
        this.log.info({ key: this.key }, 'the delivery worker holds its lock again');
      });
    }, this.retryMs);
    this.timer.unref();
    this.retryMs = Math.min(this.retryMs * 2, 10_000);
  }
}
