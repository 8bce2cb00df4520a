import pg from 'pg';
import { log } from '../log.ts';

/**
 * A dedicated LISTEN connection that reconnects. NOTIFY is only a hint: `onReconnect` runs after
 * every (re)connection because notifications sent while disconnected are lost, and `connected`
 * tells callers whether hints are currently arriving at all.
 */
export class Listener {
  private client?: pg.Client;
  private stopped = false;
  private retry?: NodeJS.Timeout;
  connected = false;

  constructor(
    private url: string,
    private channels: string[],
    private onNotify: (channel: string, payload: string) => void,
    private onReconnect: () => void = () => undefined,
  ) {}

  async start(): Promise<void> {
    this.stopped = false;
    await this.connect().catch((err) => this.scheduleReconnect(err));
  }

  private async connect() {
    const client = new pg.Client({ connectionString: this.url, application_name: `listkeeper:${process.pid}:listen` });
    client.on('notification', (n) => this.onNotify(n.channel, n.payload ?? ''));
    client.on('error', (err) => this.scheduleReconnect(err));
    client.on('end', () => this.scheduleReconnect(new Error('connection ended')));
    await client.connect();
    for (const ch of this.channels) await client.query(`listen ${pg.escapeIdentifier(ch)}`);
    this.client = client;
    this.connected = true;
    this.onReconnect();
  }

  private scheduleReconnect(err: unknown) {
    this.connected = false;
    const old = this.client;
    this.client = undefined;
    old?.removeAllListeners();
    old?.end().catch(() => undefined);
    if (this.stopped || this.retry) return;
    log.warn({ err, channels: this.channels }, 'LISTEN connection lost; reconnecting');
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.connect().catch((e) => this.scheduleReconnect(e));
    }, 1000);
    this.retry.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.connected = false;
    if (this.retry) clearTimeout(this.retry);
    const client = this.client;
    this.client = undefined;
    client?.removeAllListeners();
    await client?.end().catch(() => undefined);
  }
}
