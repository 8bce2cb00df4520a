import pg from 'pg';
import type { Logger } from '../log.ts';

/**
 * LISTEN on a dedicated connection (not from the pool: a pooled client would be handed to
 * someone else). NOTIFY is only a hint that work is waiting; when the connection drops it is
 * reopened with backoff, and the worker's polling covers the gap.
 */
export class Notifier {
  private client: pg.Client | null = null;
  private stopped = false;
  private retryMs = 500;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly url: string,
    private readonly channel: string,
    private readonly onNotify: () => void,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    await this.connect();
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    const client = new pg.Client({ connectionString: this.url, application_name: `listkeeper:${process.pid}:listen` });
    client.on('notification', () => this.onNotify());
    client.on('error', (err) => {
      this.log.warn({ err }, 'notification connection failed');
      this.reconnect(client);
    });
    client.on('end', () => this.reconnect(client));
    try {
      await client.connect();
      await client.query(`listen ${pg.escapeIdentifier(this.channel)}`);
      this.client = client;
      this.retryMs = 500;
      // Anything queued while we were away: look now.
      this.onNotify();
    } catch (err) {
      this.log.warn({ err }, 'could not listen for notifications; polling meanwhile');
      client.end().catch(() => undefined);
      this.reconnect(client);
    }
  }

  private reconnect(client: pg.Client) {
    if (this.stopped || this.timer || (this.client !== null && this.client !== client)) return;
    this.client = null;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.connect();
    }, this.retryMs);
    this.retryMs = Math.min(this.retryMs * 2, 30_000);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const client = this.client;
    this.client = null;
    await client?.end().catch(() => undefined);
  }
}
