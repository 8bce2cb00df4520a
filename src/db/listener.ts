import pg from 'pg';
import { log as rootLog, type Logger } from '../log.ts';

/**
 * LISTEN on a dedicated connection (not from the pool: a pooled client would be handed to someone
 * else), reopened with backoff when it drops. NOTIFY is only a hint: `onReconnect` runs after every
 * (re)connection because notifications sent while disconnected are lost (the delivery worker looks
 * for work then, the recipient cache forgets what it knew), and `connected` tells callers whether
 * hints are arriving at all. Callers keep polling as the guarantee.
 */
export class Listener {
  private client: pg.Client | null = null;
  private stopped = false;
  private retryMs = 500;
  private timer: NodeJS.Timeout | null = null;
  connected = false;

  constructor(
    private readonly url: string,
    private readonly channels: string[],
    private readonly onNotify: (channel: string, payload: string) => void,
    private readonly onReconnect: () => void = () => undefined,
    private readonly log: Logger = rootLog,
  ) {}

  async start(): Promise<void> {
    this.stopped = false;
    await this.connect();
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    const client = new pg.Client({ connectionString: this.url, application_name: `listkeeper:${process.pid}:listen` });
    client.on('notification', (n) => this.onNotify(n.channel, n.payload ?? ''));
    client.on('error', (err) => {
      this.log.warn({ err, channels: this.channels }, 'LISTEN connection failed');
      this.reconnect(client);
    });
    client.on('end', () => this.reconnect(client));
    try {
      await client.connect();
      for (const channel of this.channels) await client.query(`listen ${pg.escapeIdentifier(channel)}`);
      this.client = client;
      this.connected = true;
      this.retryMs = 500;
      this.onReconnect();
    } catch (err) {
      this.log.warn({ err, channels: this.channels }, 'could not LISTEN; polling meanwhile');
      client.end().catch(() => undefined);
      this.reconnect(client);
    }
  }

  private reconnect(client: pg.Client) {
    if (this.client !== null && this.client !== client) return;
    this.connected = false;
    this.client = null;
    if (this.stopped || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.connect();
    }, this.retryMs);
    this.timer.unref();
    this.retryMs = Math.min(this.retryMs * 2, 30_000);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.connected = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const client = this.client;
    this.client = null;
    client?.removeAllListeners('end');
    await client?.end().catch(() => undefined);
  }
}
