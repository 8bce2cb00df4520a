import type tls from 'node:tls';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import type { RelayTls } from '../config.ts';
import type { Logger } from '../log.ts';

/**
 * A pool of SMTP connections to one host, on nodemailer's SMTPConnection. nodemailer's own pool
 * goes through its message composer for every send, which costs about three times the CPU of
 * the SMTP transaction itself; copies here are ready-made buffers, so they go straight to the
 * connection (FACTS: the sender's CPU is the limit).
 *
 * Every wait has a deadline: nodemailer's connection, greeting and socket timeouts (`stepMs`)
 * bound each network wait, and each copy as a whole (connection included) is cut after `copyMs`
 * by destroying its socket, whatever nodemailer does. Errors are read from the connection's
 * events as well as from callbacks: nodemailer reports a refused connection or a 421 greeting
 * as an 'error' event and never calls the callback.
 */
export interface SmtpTarget {
  host: string;
  port: number;
  /** TLS from the first byte (smtps://) */
  secure: boolean;
  auth?: { user: string; pass: string };
  /** our name in EHLO */
  name: string;
  /** opportunistic: STARTTLS when offered, certificate not checked; require: TLS or no session; verify: TLS with a checked certificate */
  tls: RelayTls;
  /** trust for verify: the system's CAs plus RELAY_TLS_CA (built once) */
  secureContext?: tls.SecureContext;
}

export interface PoolTimeouts {
  /** each network wait: connecting, the greeting, each command's reply, the reply to the end of DATA */
  stepMs: number;
  /** one copy as a whole, a new connection included */
  copyMs: number;
}

export type SendResult =
  | { ok: true; response: string }
  | { ok: false; temporary: boolean; code: number | null; response: string; stage: string; aborted?: boolean };

export interface Envelope {
  from: string;
  to: string;
}

type SmtpError = Error & { code?: string; responseCode?: number; response?: string; command?: string; step?: string };

/** Only these steps refuse a copy itself; a failure before them says nothing about the copy. */
const ENVELOPE_STAGES = new Set(['MAIL FROM', 'RCPT TO', 'DATA']);

/** The host would not hold a session at all (connection, greeting, EHLO, TLS, AUTH): another MX may. */
export function sessionFailure(result: SendResult): boolean {
  return !result.ok && !result.aborted && !ENVELOPE_STAGES.has(result.stage);
}

/** After a session could not be opened, copies for this host are deferred at once for this long. */
const DOWN_MS = 2_000;

class Connection {
  smtp!: SMTPConnection;
  messages = 0;
  dead = false;
  opened = false;
  lastUsed = Date.now();
  private abortError: SmtpError | null = null;
  private settle: ((err: Error) => void) | null = null;

  constructor(readonly target: SmtpTarget, private readonly stepMs: number) {
    this.create(false);
  }

  private create(plain: boolean) {
    const t = this.target;
    const smtp = new SMTPConnection({
      host: t.host,
      port: t.port,
      secure: t.secure,
      name: t.name,
      // STARTTLS whenever it is offered; `plain` only for the retry after a failed handshake.
      ignoreTLS: plain,
      opportunisticTLS: t.tls === 'opportunistic',
      tls: { rejectUnauthorized: t.tls === 'verify', ...(t.secureContext ? { secureContext: t.secureContext } : {}) },
      connectionTimeout: this.stepMs,
      greetingTimeout: this.stepMs,
      socketTimeout: this.stepMs,
      dnsTimeout: this.stepMs,
      socketCloseTimeout: 0,
    });
    // Attached once for the connection's life (an 'error' event without a listener would throw):
    // they settle the step in progress, if any.
    smtp.on('error', (err: Error) => {
      if (this.smtp !== smtp) return;
      this.dead = true;
      this.settle?.(err);
    });
    smtp.on('end', () => {
      if (this.smtp !== smtp) return;
      this.dead = true;
      this.settle?.(this.abortError ?? Object.assign(new Error('connection closed by the server'), { code: 'ECONNECTION' }));
    });
    this.smtp = smtp;
  }

  /** Greeting, EHLO, STARTTLS as the target's policy says, then AUTH, only over verified TLS. */
  async open(): Promise<void> {
    const t = this.target;
    try {
      await this.call<void>('opening the session', (done) => this.smtp.connect(done));
    } catch (err) {
      // Opportunistic TLS (Postfix's "may"): a handshake that fails is retried once in clear.
      // nodemailer reports it as ETLS, or as a socket error while `upgrading` is still set.
      const e = err as SmtpError;
      const handshakeFailed = e.code === 'ETLS' || (this.smtp as unknown as { upgrading?: boolean }).upgrading === true;
      if (t.tls !== 'opportunistic' || t.auth || t.secure || !handshakeFailed || e.responseCode || this.abortError) throw err;
      this.smtp.close();
      this.dead = false;
      this.create(true);
      await this.call<void>('opening the session in clear after a failed TLS handshake', (done) => this.smtp.connect(done));
    }
    if (!this.smtp.secure && (t.tls !== 'opportunistic' || t.auth)) {
      throw Object.assign(new Error(`4.7.10 ${t.host} offered no STARTTLS, and TLS is required (${t.auth ? 'credentials imply RELAY_TLS=verify' : `RELAY_TLS=${t.tls}`})`), { code: 'ETLS', command: 'STARTTLS' });
    }
    if (t.auth) {
      // Config makes credentials imply verify; checked again where the password would leave.
      if (t.tls !== 'verify') throw Object.assign(new Error('credentials are only sent over TLS with a verified certificate'), { code: 'EAUTH', command: 'AUTH' });
      await this.call<void>('authenticating', (done) => this.smtp.login({ user: t.auth!.user, pass: t.auth!.pass }, (err) => done(err)));
    }
    this.opened = true;
  }

  send(envelope: Envelope, message: Buffer): Promise<string> {
    return this.call<string>('sending the copy', (done) => {
      this.smtp.send({ from: envelope.from, to: [envelope.to] }, message, (err, info) => {
        this.messages++;
        this.lastUsed = Date.now();
        if (err) return done(err);
        // An LMTP-style partial refusal shows up as rejectedErrors without an error.
        const refused = (info as { rejectedErrors?: SmtpError[] } | undefined)?.rejectedErrors?.[0];
        if (refused) return done(refused);
        done(null, (info as { response?: string } | undefined)?.response ?? '250 OK');
      });
    });
  }

  reset(): Promise<void> {
    return this.call<void>('resetting the session', (done) => this.smtp.reset((err) => done(err)));
  }

  /**
   * Runs one step of the session and settles on whichever comes first: its callback, an 'error'
   * event, the connection ending, or abort().
   */
  private call<T>(step: string, start: (done: (err?: Error | null, value?: T) => void) => void): Promise<T> {
    if (this.abortError) return Promise.reject(this.abortError);
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      // Each step has its own `finish`: a callback nodemailer makes after the 'error' event that
      // already settled this step is ignored, and cannot settle a later step.
      const finish = (err?: Error | null, value?: T) => {
        if (settled) return;
        settled = true;
        if (this.settle === finish) this.settle = null;
        if (err) {
          (err as SmtpError).step ??= step;
          reject(err);
        } else resolve(value as T);
      };
      this.settle = finish;
      start(finish);
    });
  }

  /** Destroys the socket now; the step in progress fails with `reason`. */
  abort(reason: string, code: string) {
    this.abortError ??= Object.assign(new Error(reason), { code });
    this.dead = true;
    this.smtp.close();
    this.settle?.(this.abortError);
  }

  get aborted(): string | null {
    return this.abortError?.code ?? null;
  }

  close() {
    this.dead = true;
    try {
      if (this.opened) this.smtp.quit();
      else this.smtp.close();
    } catch {
      this.smtp.close();
    }
  }
}

export class SmtpPool {
  private idle: Connection[] = [];
  private conns = new Set<Connection>();
  private waiting: (() => void)[] = [];
  private closed = false;
  private sweeper: NodeJS.Timeout;
  private down: { until: number; result: SendResult } | null = null;

  constructor(
    readonly target: SmtpTarget,
    private readonly max: number,
    private readonly log: Logger,
    private readonly timeouts: PoolTimeouts,
    private readonly opts: { maxMessages?: number; idleMs?: number } = {},
  ) {
    this.sweeper = setInterval(() => this.sweep(), 5_000);
    this.sweeper.unref();
  }

  /** Sends one message to one recipient; never throws, the result says what happened. */
  async send(envelope: Envelope, message: Buffer): Promise<SendResult> {
    for (let attempt = 0; ; attempt++) {
      const conn = await this.acquire();
      if (!conn) return shutdownResult();
      if (!conn.opened && this.down && this.down.until > Date.now()) {
        // The host refused a session a moment ago: defer without knocking again.
        this.discard(conn);
        return this.down.result;
      }
      const reused = conn.opened;
      const deadline = setTimeout(() => conn.abort(`no result within ${Math.round(this.timeouts.copyMs / 1000)} s, the time one copy may take`, 'ETIMEDOUT'), this.timeouts.copyMs);
      try {
        if (!conn.opened) await conn.open();
        const response = await conn.send(envelope, message);
        this.release(conn);
        this.isUp();
        return { ok: true, response };
      } catch (err) {
        const e = err as SmtpError;
        if (conn.aborted === 'ESHUTDOWN') {
          this.discard(conn);
          return shutdownResult();
        }
        if (!conn.opened) {
          this.discard(conn);
          return this.isDown(failure(e, this.target));
        }
        if (e.responseCode && e.responseCode !== 421 && (e.code === 'EENVELOPE' || e.code === 'EMESSAGE') && !conn.dead) {
          // The server refused this message; the connection itself is fine.
          await conn.reset().then(() => this.release(conn), () => this.discard(conn));
          return failure(e, this.target);
        }
        this.discard(conn);
        // A reused connection the server had closed meanwhile: try once more on a fresh one.
        if (reused && attempt === 0 && !e.responseCode && !conn.aborted) continue;
        return failure(e, this.target);
      } finally {
        clearTimeout(deadline);
      }
    }
  }

  /** An idle connection, or a new unopened one taking a free slot; null once the pool is closed. */
  private async acquire(): Promise<Connection | null> {
    for (;;) {
      if (this.closed) return null;
      const conn = this.idle.pop();
      if (conn) {
        if (!conn.dead) return conn;
        this.conns.delete(conn);
        continue;
      }
      if (this.conns.size < this.max) {
        const fresh = new Connection(this.target, this.timeouts.stepMs);
        this.conns.add(fresh);
        return fresh;
      }
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
  }

  private isDown(result: SendResult): SendResult {
    if (!this.down) this.log.warn({ reason: result.ok ? '' : result.response }, 'could not open an SMTP session; copies are deferred');
    this.down = { until: Date.now() + DOWN_MS, result };
    return result;
  }

  private isUp() {
    if (!this.down) return;
    this.down = null;
    this.log.info('SMTP sessions work again');
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
    this.conns.delete(conn);
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
        this.conns.delete(c);
      } else keep.push(c);
    }
    this.idle = keep;
  }

  /** Closes idle connections; sends in progress finish on theirs. */
  close(): void {
    this.closed = true;
    clearInterval(this.sweeper);
    for (const c of this.idle) {
      c.close();
      this.conns.delete(c);
    }
    this.idle = [];
    for (const w of this.waiting.splice(0)) w();
    this.log.debug({ host: this.target.host }, 'smtp pool closed');
  }

  /** Destroys every connection now: sends in progress return `aborted` (shutdown). */
  abort(): void {
    this.close();
    for (const c of this.conns) c.abort('delivery is shutting down', 'ESHUTDOWN');
  }
}

function shutdownResult(): SendResult {
  return { ok: false, temporary: true, code: null, response: 'ESHUTDOWN: delivery is shutting down', stage: 'CONN', aborted: true };
}

function failure(e: SmtpError, target: SmtpTarget): SendResult {
  let code = typeof e.responseCode === 'number' ? e.responseCode : null;
  const response = (e.response ?? e.message ?? String(e)).replace(/\s+/g, ' ').trim();
  // The stage says whose problem it is: only RCPT TO refusals are about the recipient's address.
  let stage = e.command ?? (e.code === 'EMESSAGE' ? 'DATA' : 'CONN');
  if (code === null && e.code === 'EMESSAGE') {
    // nodemailer's own SIZE check: the message is too big for this server, for good.
    code = 552;
    stage = 'DATA';
  }
  // Only the envelope or the message can be refused for good. A session the server would not
  // open (greeting, EHLO, TLS, AUTH) says nothing about this copy: it is retried later.
  const permanent = code !== null && code >= 500 && ENVELOPE_STAGES.has(stage);
  const while_ = e.step ? ` (${e.step})` : '';
  const text = code === null ? `${target.host}:${target.port}: ${e.code ?? 'ERROR'}: ${response}${while_}` : response;
  return { ok: false, temporary: !permanent, code, response: text, stage };
}
