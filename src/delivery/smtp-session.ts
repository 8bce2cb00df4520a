/*
 * One SMTP session on nodemailer's SMTPConnection: opened under the target's TLS policy (AUTH
 * only over TLS with a verified certificate), then used for one copy after another.
 *
 * Every step settles on whichever comes first: its callback, an 'error' event, the connection
 * ending, or abort(). nodemailer reports a refused connection or a 421 greeting as an 'error'
 * event and never calls the callback, so waiting for the callback alone waits forever. Each
 * network wait is bounded by nodemailer's connection, greeting and socket timeouts (`stepMs`),
 * but the reply to the final dot, which gets `dataDoneMs` (lengthenDotWait); abort() is the
 * caller's deadline for a whole copy, and shutdown.
 */

import type net from 'node:net';
import type tls from 'node:tls';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import type { RelayTls } from '../config.ts';
import { envelopeAddress } from '../mail/address.ts';
import { hasEightBit, MAX_DEPTH } from '../mail/seven-bit.ts';

export interface SmtpTarget {
  host: string;
  /** the name for TLS (SNI) when `host` is an address looked up from it */
  servername?: string;
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

export interface Envelope {
  from: string;
  to: string;
}

/** The copy made 7-bit (mail/seven-bit.ts, then signed), null when it cannot be. */
export type SevenBit = () => Promise<Buffer | null>;

/**
 * nodemailer's errors, and the step of ours they happened in. `afterData`: the session failed
 * without a reply once the whole message and its final dot were handed to the connection, so
 * the server may have taken it.
 */
export type SmtpError = Error & { code?: string; responseCode?: number; response?: string; command?: string; step?: string; afterData?: boolean };

export class SmtpSession {
  smtp!: SMTPConnection;
  messages = 0;
  dead = false;
  opened = false;
  lastUsed = performance.now();
  private abortError: SmtpError | null = null;
  /** the copy being sent went to the connection whole, its final dot with it (watchHandOver) */
  private handedOver = false;
  /** the caller's, told of the hand-over (the copy's deadline moves on by dataDoneMs) */
  private onHandOver: (() => void) | null = null;
  /** the socket's idle timeout was lengthened for the reply to this copy's final dot */
  private dotWait = false;
  private settle: ((err?: Error | null, value?: unknown) => void) | null = null;

  /** `dataDoneMs`: the wait for the reply to the final dot (RFC 5321 §4.5.3.2.6), `stepMs` by default */
  constructor(readonly target: SmtpTarget, private readonly stepMs: number, private readonly dataDoneMs = stepMs) {
    this.create(false);
  }

  private create(plain: boolean) {
    const t = this.target;
    const smtp = new SMTPConnection({
      host: t.host,
      ...(t.servername ? { servername: t.servername } : {}),
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
    watchHandOver(smtp, () => {
      this.handedOver = true;
      this.onHandOver?.();
    });
    lengthenDotWait(smtp, () => {
      if (!this.handedOver || this.dotWait || this.dataDoneMs <= this.stepMs) return null;
      this.dotWait = true;
      return this.dataDoneMs - this.stepMs;
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

  /** The extensions the server named in its EHLO reply (nodemailer keeps them, upper case). */
  offers(extension: string): boolean {
    return ((this.smtp as unknown as { _supportedExtensions?: string[] })._supportedExtensions ?? []).includes(extension);
  }

  /**
   * Sends one copy, its envelope's domains in A-labels (envelopeAddress). MAIL FROM says
   * BODY=8BITMIME when the copy has 8-bit bytes, and SMTPUTF8 when an address is still not ASCII
   * (a local part; nodemailer adds both when the server offers them). A server
   * without 8BITMIME gets `sevenBit()` instead (mail/seven-bit.ts); one without SMTPUTF8 cannot
   * take the copy at all (RFC 6531 §3.4): a permanent failure that says why, nothing sent.
   * `onHandOver` is called when the message and its final dot go to the connection.
   */
  async send(given: Envelope, message: Buffer, sevenBit?: SevenBit, onHandOver?: () => void): Promise<string> {
    const t = this.target;
    const envelope = { from: envelopeAddress(given.from), to: envelopeAddress(given.to) };
    if (!isAscii(envelope.from) || !isAscii(envelope.to)) {
      if (!this.offers('SMTPUTF8')) {
        const who = isAscii(envelope.to) ? `sender ${envelope.from}` : `recipient ${envelope.to}`;
        throw envelopeError(`5.6.7 ${t.host} does not offer SMTPUTF8, which the non-ASCII ${who} needs (RFC 6531 §3.4); not sent`);
      }
    }
    let bytes = message;
    let eightBit = hasEightBit(message);
    if (eightBit && !this.offers('8BITMIME')) {
      const converted = sevenBit ? await sevenBit() : null;
      if (!converted) throw envelopeError(`5.6.3 ${t.host} does not offer 8BITMIME, and the copy cannot be made 7-bit (it has 8-bit header fields, or parts nested more than ${MAX_DEPTH} deep); not sent`);
      bytes = converted;
      eightBit = false;
    }
    // From the moment the message and its final dot are handed to the connection (watchHandOver),
    // a timeout or a lost connection leaves the copy perhaps delivered.
    this.handedOver = false;
    this.dotWait = false;
    this.onHandOver = onHandOver ?? null;
    try {
      return await this.transfer(envelope, bytes, eightBit);
    } catch (err) {
      if (this.handedOver && !(err as SmtpError).responseCode) (err as SmtpError).afterData = true;
      throw err;
    } finally {
      this.onHandOver = null;
      // The next command's reply gets stepMs again.
      if (this.dotWait && !this.dead) (this.smtp as unknown as { _socket?: net.Socket })._socket?.setTimeout(this.stepMs);
      this.dotWait = false;
    }
  }

  private transfer(envelope: Envelope, body: Buffer, eightBit: boolean): Promise<string> {
    return this.call<string>('sending the copy', (done) => {
      this.smtp.send({ from: envelope.from, to: [envelope.to], use8BitMime: eightBit }, body, (err, info) => {
        this.messages++;
        this.lastUsed = performance.now();
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
      // Each step has its own callback: one nodemailer makes after the 'error' event that already
      // settled this step is ignored, and cannot settle a later step. (Assigned to a property, not
      // to a const: tsx's keepNames would wrap a named closure in a defineProperty on every call.)
      this.settle = (err?: Error | null, value?: unknown) => {
        if (settled) return;
        settled = true;
        if (this.settle === done) this.settle = null;
        if (err) {
          (err as SmtpError).step ??= step;
          reject(err);
        } else resolve(value as T);
      };
      const done = this.settle;
      start(done);
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

function isAscii(text: string): boolean {
  return /^[\x00-\x7f]*$/.test(text);
}

/** A refusal of ours, before MAIL FROM: permanent, reported as the server's would be. */
function envelopeError(text: string): SmtpError {
  return Object.assign(new Error(text), { code: 'EENVELOPE', responseCode: 554, response: `554 ${text}`, command: 'MAIL FROM' });
}

/**
 * Calls `handedOver` when nodemailer hands a message to the connection: once the server has said
 * 354 to DATA, it makes the stream that dot-stuffs the message and, given a Buffer, writes the whole
 * message and the final dot into it at once (smtp-connection's send() and _createSendStream()).
 * nodemailer has no event for it. Giving it the message as a stream whose end would say so cost the
 * worker 40% more CPU a copy (stream plumbing per copy: 169 → 241 ms per 1,000 copies in the
 * delivery bench). Without the method (another nodemailer), nothing is called: a copy is then
 * never taken for perhaps delivered, as before.
 */
function watchHandOver(smtp: SMTPConnection, handedOver: () => void): void {
  const internal = smtp as unknown as { _createSendStream?: (...args: unknown[]) => unknown };
  const create = internal._createSendStream;
  if (typeof create !== 'function') return;
  internal._createSendStream = function (this: unknown, ...args: unknown[]) {
    handedOver();
    return create.apply(this, args);
  };
}

/**
 * The reply to the final dot may take `dataDoneMs`, not `stepMs`: receivers scan the content before
 * they answer, and RFC 5321 §4.5.3.2.6 asks a client to wait 10 minutes for it (Postfix's
 * smtp_data_done_timeout). nodemailer has no option for it: it times that reply, like every other,
 * with the socket's idle timeout (socketTimeout), through its _onTimeout(). So the first idle
 * timeout once the message is handed over and written out (nothing left in the socket's buffer:
 * a server that stops reading the message still gets stepMs) is turned into the rest of the
 * wait: `rest()` says how long more, or null to time out as nodemailer does. Without the method
 * (another nodemailer), the reply gets stepMs, as before.
 */
function lengthenDotWait(smtp: SMTPConnection, rest: () => number | null): void {
  const internal = smtp as unknown as { _onTimeout?: () => unknown; _socket?: net.Socket };
  const timedOut = internal._onTimeout;
  if (typeof timedOut !== 'function') return;
  internal._onTimeout = function (this: unknown) {
    const socket = internal._socket;
    const more = socket && socket.writableLength === 0 ? rest() : null;
    if (more === null) return timedOut.apply(this);
    socket!.setTimeout(more);
    return undefined;
  };
}
