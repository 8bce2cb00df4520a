import SMTPConnection from 'nodemailer/lib/smtp-connection';
import type { Logger } from '../log.ts';

/**
 * A pool of SMTP connections to one host, on nodemailer's SMTPConnection. nodemailer's own pool
 * goes through its message composer for every send, which costs about three times the CPU of
 * the SMTP transaction itself; copies here are ready-made buffers, so they go straight to the
 * connection (FACTS: the sender's CPU is the limit).
 */
export interface SmtpTarget {
  host: string;
  port: number;
  /** TLS from the first byte (smtps://) */
  secure: boolean;
  auth?: { user: string; pass: string };
  /** our name in EHLO */
  name?: string;
  /** STARTTLS when the server offers it (direct MX); a relay on localhost usually has none */
  opportunisticTLS?: boolean;
}

export type SendResult =
  | { ok: true; response: string }
  | { ok: false; temporary: boolean; code: number | null; response: string; stage: string };

export interface Envelope {
  from: string;
  to: string;
}

type SmtpError = Error & { code?: string; responseCode?: number; response?: string; command?: string };

class Connection {
  readonly smtp: SMTPConnection;
  messages = 0;
  dead = false;
  lastUsed = Date.now();

  constructor(target: SmtpTarget) {
    this.smtp = new SMTPConnection({
      host: target.host,
      port: target.port,
      secure: target.secure,
      name: target.name,
      ignoreTLS: !target.opportunisticTLS && !target.secure,
      opportunisticTLS: target.opportunisticTLS,
      tls: { rejectUnauthorized: false },
      connectionTimeout: 30_000,
      greetingTimeout: 30_000,
      socketTimeout: 300_000,
    });
    this.smtp.on('error', () => { this.dead = true; });
    this.smtp.on('end', () => { this.dead = true; });
  }

  connect(auth?: SmtpTarget['auth']): Promise<void> {
    return new Promise((resolve, reject) => {
      this.smtp.connect((err?: Error | null) => {
        if (err) return reject(err);
        if (!auth) return resolve();
        this.smtp.login({ user: auth.user, pass: auth.pass }, (e?: Error | null) => (e ? reject(e) : resolve()));
      });
    });
  }

  send(envelope: Envelope, message: Buffer): Promise<string> {
    return new Promise((resolve, reject) => {
      this.smtp.send({ from: envelope.from, to: [envelope.to] }, message, (err: Error | null, info?: { response?: string; rejected?: string[]; rejectedErrors?: SmtpError[] }) => {
        this.messages++;
        this.lastUsed = Date.now();
        if (err) return reject(err);
        // An LMTP-style partial refusal shows up as rejectedErrors without an error.
        const refused = info?.rejectedErrors?.[0];
        if (refused) return reject(refused);
        resolve(info?.response ?? '250 OK');
      });
    });
  }

  reset(): Promise<void> {
    return new Promise((resolve, reject) => this.smtp.reset((err?: Error | null) => (err ? reject(err) : resolve())));
  }

  close() {
    this.dead = true;
    try {
      this.smtp.quit();
    } catch {
      this.smtp.close();
    }
  }
}

export class SmtpPool {
  private idle: Connection[] = [];
  private open = 0;
  private waiting: (() => void)[] = [];
  private closed = false;
  private sweeper: NodeJS.Timeout;

  constructor(
    readonly target: SmtpTarget,
    private readonly max: number,
    private readonly log: Logger,
    private readonly opts: { maxMessages?: number; idleMs?: number } = {},
  ) {
    this.sweeper = setInterval(() => this.sweep(), 5_000);
    this.sweeper.unref();
  }

  /** Sends one message to one recipient; never throws, the result says what happened. */
  async send(envelope: Envelope, message: Buffer): Promise<SendResult> {
    for (let attempt = 0; ; attempt++) {
      let conn: Connection;
      try {
        conn = await this.acquire();
      } catch (err) {
        return failure(err as SmtpError);
      }
      const reused = conn.messages > 0;
      try {
        const response = await conn.send(envelope, message);
        this.release(conn);
        return { ok: true, response };
      } catch (err) {
        const e = err as SmtpError;
        if (e.responseCode && e.responseCode !== 421 && (e.code === 'EENVELOPE' || e.code === 'EMESSAGE') && !conn.dead) {
          // The server refused this message; the connection itself is fine.
          await conn.reset().then(() => this.release(conn), () => this.discard(conn));
          return failure(e);
        }
        this.discard(conn);
        // A reused connection the server had closed meanwhile: try once more on a fresh one.
        if (reused && attempt === 0 && !e.responseCode) continue;
        return failure(e);
      }
    }
  }

  private async acquire(): Promise<Connection> {
    for (;;) {
      if (this.closed) throw Object.assign(new Error('delivery is shutting down'), { code: 'ESHUTDOWN' });
      const conn = this.idle.pop();
      if (conn) {
        if (!conn.dead) return conn;
        this.open--;
        continue;
      }
      if (this.open < this.max) {
        this.open++;
        const fresh = new Connection(this.target);
        try {
          await fresh.connect(this.target.auth);
          return fresh;
        } catch (err) {
          this.open--;
          fresh.dead = true;
          fresh.smtp.close();
          this.wakeOne();
          throw err;
        }
      }
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
  }

  private release(conn: Connection) {
    if (this.closed || conn.dead || conn.messages >= (this.opts.maxMessages ?? 1000)) {
      this.discard(conn);
      return;
    }
    this.idle.push(conn);
    this.wakeOne();
  }

  private discard(conn: Connection) {
    conn.close();
    this.open--;
    this.wakeOne();
  }

  private wakeOne() {
    this.waiting.shift()?.();
  }

  private sweep() {
    const limit = Date.now() - (this.opts.idleMs ?? 30_000);
    const keep: Connection[] = [];
    for (const c of this.idle) {
      if (c.dead || c.lastUsed < limit) {
        c.close();
        this.open--;
      } else keep.push(c);
    }
    this.idle = keep;
  }

  /** Closes idle connections; sends in progress finish on theirs. */
  close(): void {
    this.closed = true;
    clearInterval(this.sweeper);
    for (const c of this.idle) c.close();
    this.open -= this.idle.length;
    this.idle = [];
    for (const w of this.waiting.splice(0)) w();
    this.log.debug({ host: this.target.host }, 'smtp pool closed');
  }
}

function failure(e: SmtpError): SendResult {
  const code = typeof e.responseCode === 'number' ? e.responseCode : null;
  const response = (e.response ?? e.message ?? String(e)).replace(/\s+/g, ' ').trim();
  // The stage says whose problem it is: only RCPT TO refusals are about the recipient's address.
  const stage = e.command ?? (e.code === 'EMESSAGE' ? 'DATA' : 'CONN');
  return { ok: false, temporary: code === null || code < 500, code, response: code === null ? `${e.code ?? 'ERROR'}: ${response}` : response, stage };
}
