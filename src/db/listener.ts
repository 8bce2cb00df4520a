import pg from 'pg';
import { log as rootLog, type Logger } from '../log.ts';
import { RepeatedFailures } from '../repeated-failures.ts';
import { briefError, dedicatedClient } from './pool.ts';

/** Reconnection backoff: from the first to the longest wait between attempts. */
const FIRST_RETRY_MS = 500;
const LONGEST_RETRY_MS = 5_000;

/**
 * LISTEN on a dedicated connection (not from the pool: a pooled client would be handed to someone
 * else), reopened with backoff when it drops. NOTIFY is only a hint: `onReconnect` runs after every
 * (re)connection because notifications sent while disconnected are lost (the delivery worker looks
 * for work then, the recipient cache forgets what it knew), and `connected` tells callers whether
 * hints are arriving at all. Callers keep polling as the guarantee.
 *
 * Only the current connection's events count: a dropped one reports its error and then its end,
 * and a failed attempt its end, and none of those may start a second connection beside the one
 * that replaced it.
 */
export class Listener {
  private client: pg.Client | null = null;
  private stopped = false;
  private retryMs = FIRST_RETRY_MS;
  private timer: NodeJS.Timeout | null = null;
  connected = false;

  constructor(
    private readonly url: string,
    private readonly channels: string[],
    private readonly onNotify: (channel: string, payload: string) => void,
    private readonly onReconnect: () => void = () => undefined,
    private readonly log: Logger = rootLog,
    /** its owner's, or its own: tries that fail one after another are logged once, and summed up */
    private readonly failures = new RepeatedFailures(log),
  ) {}

  async start(): Promise<void> {
    this.stopped = false;
    await this.connect();
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    const client = dedicatedClient(this.url, 'listen', (err) => {
      if (client !== this.client) return;
      this.log.warn({ error: briefError(err), channels: this.channels }, 'LISTEN connection lost; polling meanwhile');
      this.lost(client);
    });
    this.client = client;
    client.on('notification', (n) => this.onNotify(n.channel, n.payload ?? ''));
    client.on('end', () => this.lost(client));
    try {
      await client.connect();
      for (const channel of this.channels) await client.query(`listen ${pg.escapeIdentifier(channel)}`);
    } catch (err) {
      if (client !== this.client) return;
      this.failures.failed(`listen:${this.channels.join()}`, err, 'could not LISTEN; polling meanwhile', { channels: this.channels }, 'warn');
      this.lost(client);
      return;
    }
    if (client !== this.client) return; // stopped meanwhile: stop() closes it
    this.connected = true;
    this.retryMs = FIRST_RETRY_MS;
    this.failures.ok(`listen:${this.channels.join()}`);
    try {
      this.onReconnect();
    } catch (err) {
      this.log.error({ err, channels: this.channels }, 'LISTEN reconnection hook failed');
    }
  }

  /** The current connection is gone: closed for good, and another one tried after a pause. */
  private lost(client: pg.Client) {
    if (client !== this.client) return;
    this.client = null;
    this.connected = false;
    client.end().catch(() => undefined);
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.connect();
    }, this.retryMs);
    this.timer.unref();
    this.retryMs = Math.min(this.retryMs * 2, LONGEST_RETRY_MS);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.connected = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const client = this.client;
    this.client = null;
    await client?.end().catch(() => undefined);
  }
}
