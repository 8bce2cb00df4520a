import type { Logger } from '../log.ts';
import { SmtpSession, type Envelope, type SevenBit, type SmtpError, type SmtpTarget } from './smtp-session.ts';

export type { Envelope, SevenBit, SmtpTarget };

/**
 * A pool of SMTP sessions (smtp-session.ts) to one host. nodemailer's own pool goes through its
 * message composer for every send, which costs about three times the CPU of the SMTP transaction
 * itself; copies here are ready-made buffers, so they go straight to the connection (measured on this
 * kind of machine: the sender's CPU is the limit).
 *
 * Every wait has a deadline: each network wait `stepMs` (in the session), the reply to the final
 * dot `dataDoneMs`, and each copy as a whole, its connection included, `copyMs` until the message
 * is handed over and `dataDoneMs` more from then, after which its socket is destroyed whatever the
 * server is doing. The pool also says what a failure means for the copy (failure()).
 */
export interface PoolTimeouts {
  /** each network wait: connecting, the greeting, each command's reply, the message's transfer */
  stepMs: number;
  /** the reply to the final dot, once the message is written (RFC 5321 §4.5.3.2.6: 10 minutes) */
  dataDoneMs: number;
  /** one copy as a whole, a new connection included, until its message is handed over */
  copyMs: number;
}

/**
 * When a send in flight must have ended (performance.now(), a monotonic clock: a wall clock that
 * jumps would cut a copy awaiting its final dot's reply, or hide a stuck one), read by the worker's heartbeat: the
 * copy's deadline, moved on by `dataDoneMs` once its message is handed over. `waiting`: queued for
 * a connection that other sends of the same worker hold; their own deadlines speak for it.
 */
export interface SendClock {
  at: number;
  waiting: boolean;
}

export type SendResult =
  | { ok: true; response: string }
  | {
    ok: false; temporary: boolean; code: number | null; response: string; stage: string; aborted?: boolean;
    /** no reply to the final dot: the server may have taken the copy */
    maybeDelivered?: boolean;
  };

/** Only these steps refuse a copy itself; a failure before them says nothing about the copy. */
const ENVELOPE_STAGES = new Set(['MAIL FROM', 'RCPT TO', 'DATA']);

/** The host would not hold a session at all (connection, greeting, EHLO, TLS, AUTH): another MX may. */
export function sessionFailure(result: SendResult): boolean {
  return !result.ok && !result.aborted && !ENVELOPE_STAGES.has(result.stage);
}

/** After a session could not be opened, or timed out, copies for this host are deferred at once for this long. */
const DOWN_MS = 2_000;

export class SmtpPool {
  private idle: SmtpSession[] = [];
  private conns = new Set<SmtpSession>();
  private waiting: (() => void)[] = [];
  private closed = false;
  private sweeper: NodeJS.Timeout | undefined;
  private down: { until: number; result: SendResult } | null = null;
  /** sends in progress, and when the last one ended (unusedSince) */
  private active = 0;
  private lastSend = performance.now();

  constructor(
    readonly target: SmtpTarget,
    private readonly max: number,
    private readonly log: Logger,
    private readonly timeouts: PoolTimeouts,
    /** `sweep: false`: no timer of its own, the owner calls sweep() (MxTransport, for all its pools) */
    private readonly opts: { maxMessages?: number; idleMs?: number; sweep?: boolean } = {},
  ) {
    if (opts.sweep !== false) {
      this.sweeper = setInterval(() => this.sweep(), 5_000);
      this.sweeper.unref();
    }
  }

  /** Since when nothing has used the pool (no send, no connection, no waiter); null while something does. */
  get unusedSince(): number | null {
    return this.active === 0 && this.conns.size === 0 && this.waiting.length === 0 ? this.lastSend : null;
  }

  /**
   * Sends one message to one recipient; never throws, the result says what happened.
   * `sevenBit` makes the 7-bit form, for a server without 8BITMIME (smtp-session.ts); `end`
   * (ms since the epoch) cuts the copy earlier than `copyMs` would; `clock` is kept at the copy's
   * deadline as it goes.
   */
  async send(envelope: Envelope, message: Buffer, sevenBit?: SevenBit, end?: number, clock?: SendClock): Promise<SendResult> {
    this.active++;
    try {
      return await this.sendOnce(envelope, message, sevenBit, end, clock);
    } finally {
      this.active--;
      this.lastSend = performance.now();
    }
  }

  private async sendOnce(envelope: Envelope, message: Buffer, sevenBit?: SevenBit, end?: number, clock?: SendClock): Promise<SendResult> {
    for (let attempt = 0; ; attempt++) {
      if (clock) clock.waiting = true;
      const conn = await this.acquire();
      if (clock) clock.waiting = false;
      if (!conn) return shutdownResult();
      if (!conn.opened && this.down && this.down.until > performance.now()) {
        // The host refused a session a moment ago: defer without knocking again.
        this.discard(conn);
        return this.down.result;
      }
      // `end`: the caller's deadline for the copy as a whole (several MX hosts share one). Spent
      // waiting for a connection, it says nothing about the host: deferred, the host untouched.
      const ms = Math.min(this.timeouts.copyMs, (end ?? Infinity) - performance.now());
      if (ms <= 0) {
        this.release(conn);
        return { ok: false, temporary: true, code: null, response: `${this.target.host}:${this.target.port}: ETIMEDOUT: no time left for the copy, spent waiting for a connection`, stage: 'CONN' };
      }
      const reused = conn.opened;
      let cutAt = performance.now() + ms;
      if (clock) clock.at = cutAt;
      let why = `no result within ${Math.round(this.timeouts.copyMs / 1000)} s, the time one copy may take`;
      const cut = () => conn.abort(why, 'ETIMEDOUT');
      let deadline = setTimeout(cut, ms);
      // Once the message is handed over, its final dot's reply may take dataDoneMs more (the
      // session's socket waits that long for it): the copy's deadline moves on by as much.
      const handedOver = () => {
        cutAt += this.timeouts.dataDoneMs;
        if (clock) clock.at = cutAt;
        why = `no result within the copy's time and ${Math.round(this.timeouts.dataDoneMs / 1000)} s more for the reply to its final dot`;
        clearTimeout(deadline);
        deadline = setTimeout(cut, cutAt - performance.now());
      };
      try {
        if (!conn.opened) await conn.open();
        const response = await conn.send(envelope, message, sevenBit, handedOver);
        this.release(conn);
        this.isUp();
        return { ok: true, response };
      } catch (err) {
        const e = err as SmtpError;
        if (conn.aborted === 'ESHUTDOWN') {
          this.discard(conn);
          // Cut while waiting for the reply to its final dot: the server may have taken it, so
          // the row is not given back untouched but deferred, saying so (docs/delivery.md).
          return e.afterData ? failure(e, this.target) : shutdownResult();
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
        if (e.afterData) this.log.warn({ reason: e.message }, 'no reply to the end of data: the copy may have been delivered; not sent again on a fresh connection');
        // A reused connection the server had closed meanwhile: try once more on a fresh one
        // (never once the message went: that would be a second copy).
        if (reused && attempt === 0 && !e.responseCode && !conn.aborted && !e.afterData) continue;
        // A session that went silent (a step's or the copy's deadline passed) is a host that
        // tarpits: the copies queued behind it are deferred at once, not each given a fresh
        // connection and a whole deadline, holding lanes that other domains' copies wait for.
        // The copies deferred for it were not sent: none of them may have been delivered.
        if (e.code === 'ETIMEDOUT') {
          this.isDown(failure(e, this.target, false));
          return failure(e, this.target);
        }
        return failure(e, this.target);
      } finally {
        clearTimeout(deadline);
      }
    }
  }

  /** An idle connection, or a new unopened one taking a free slot; null once the pool is closed. */
  private async acquire(): Promise<SmtpSession | null> {
    for (;;) {
      if (this.closed) return null;
      const conn = this.idle.pop();
      if (conn) {
        if (!conn.dead) return conn;
        this.conns.delete(conn);
        continue;
      }
      if (this.conns.size < this.max) {
        const fresh = new SmtpSession(this.target, this.timeouts.stepMs, this.timeouts.dataDoneMs);
        this.conns.add(fresh);
        return fresh;
      }
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
  }

  private isDown(result: SendResult): SendResult {
    if (!this.down) this.log.warn({ reason: result.ok ? '' : result.response }, 'could not open an SMTP session; copies are deferred');
    this.down = { until: performance.now() + DOWN_MS, result };
    return result;
  }

  private isUp() {
    if (!this.down) return;
    this.down = null;
    this.log.info('SMTP sessions work again');
  }

  private release(conn: SmtpSession) {
    if (this.closed || conn.dead || conn.messages >= (this.opts.maxMessages ?? 1000)) {
      this.discard(conn);
      return;
    }
    this.idle.push(conn);
    this.wakeOne();
  }

  private discard(conn: SmtpSession) {
    conn.close();
    this.conns.delete(conn);
    this.wakeOne();
  }

  private wakeOne() {
    this.waiting.shift()?.();
  }

  /** Closes connections idle longer than `idleMs`. */
  sweep() {
    const limit = performance.now() - (this.opts.idleMs ?? 30_000);
    const keep: SmtpSession[] = [];
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

function failure(e: SmtpError, target: SmtpTarget, afterData = e.afterData === true): SendResult {
  let code = typeof e.responseCode === 'number' ? e.responseCode : null;
  // The server's words are foreign input and end up in PostgreSQL text (outbox.last_error,
  // bounces): a NUL there made every write of the worker's results fail, and the worker, which
  // writes its results before it sends anything more, stalled for good. Control characters go.
  const response = (e.response ?? e.message ?? String(e)).replace(/[\s\u0000-\u001f\u007f]+/g, ' ').trim();
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
  const maybe = afterData ? ', after the end of data: the copy may have been delivered (and may arrive twice)' : '';
  const text = code === null ? `${target.host}:${target.port}: ${e.code ?? 'ERROR'}: ${response}${while_}${maybe}` : response;
  return { ok: false, temporary: !permanent, code, response: text, stage, ...(afterData ? { maybeDelivered: true } : {}) };
}
