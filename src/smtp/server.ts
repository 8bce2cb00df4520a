import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type pg from 'pg';
import type { SMTPServer, SMTPServerDataStream, SMTPServerSession } from 'smtp-server';
import { resolveRecipient, type ResolvedRecipient } from '../db/lists.ts';
import { config, defaultMemoryBytes, readTlsFiles, type TlsFiles } from '../config.ts';
import type { CoreSettings } from '../core/settings.ts';
import { GreetingServer, greetingDelayMs, sessionLimit } from './greeting.ts';
import { MemoryBudget } from './memory-budget.ts';
import { RecipientCache } from './recipient-cache.ts';
import { receive } from '../core/inbound.ts';
import { resolvers } from '../dns.ts';
import { lazyChild, log } from '../log.ts';
import type { Peer } from '../mail/post-checks.ts';
import { smtpMessages } from '../metrics.ts';
import { waitsOut } from '../db/pg-errors.ts';
import { RepeatedFailures } from '../repeated-failures.ts';

export interface SmtpOptions {
  host: string;
  port: number;
  lmtp: boolean;
  maxSize: number;
  /** bytes of message data held at once across sessions (see MemoryBudget); default defaultMemoryBytes(maxSize) */
  memoryBytes?: number;
  /** longest wait for that memory before a 451; default 30 s */
  memoryWaitMs?: number;
  /** longest DATA phase: a sender still sending after it gets 451 and is disconnected; default 10 minutes */
  dataTimeoutMs?: number;
  /** the database URL, for the LISTEN connection of the recipient cache; without it, no cache */
  databaseUrl?: string;
  /** what the use cases need of the configuration; default config() */
  settings?: CoreSettings;
  /** PEM files of the certificate and key: STARTTLS is offered only with them (reloadTls() reads them again) */
  tls?: TlsFiles | null;
  /** MAIL is refused (530 5.7.0) until the session has done STARTTLS */
  requireTls?: boolean;
  /** the wait before the greeting for every peer; unset or null: chosen per peer (src/smtp/greeting.ts) */
  greetingDelayMs?: number | null;
}

/** One RCPT TO that was answered 250, in the order given (duplicates included). */
type Recipient = ResolvedRecipient & { address: string };

/** What every session buffers without asking the memory budget. */
const SMALL_MESSAGE = 1024 * 1024;

/**
 * RCPT TO answered 250 in one transaction, repeats included (Postfix's smtpd_recipient_limit):
 * past it, 452 4.5.3, and an MTA sends the rest in another transaction (RFC 5321 4.5.3.1.10).
 * Each recipient is handled after DATA on its own: without a cap, one message to 40,000
 * `-bounces+TOKEN` addresses wrote 40,000 rows and held the listener for over a minute.
 */
export const MAX_RECIPIENTS = 1000;

/**
 * Unknown recipients one session may name before it is closed with 421 (Postfix's
 * smtpd_hard_error_limit is 20): past it a client is guessing list names, each guess a lookup.
 * Not counted for an LMTP client or a loopback peer (our own MTA, whose mail is everyone's).
 */
export const MAX_UNKNOWN_RECIPIENTS = 20;

/**
 * smtp-server writes every reply with its own socket write, one syscall each. A client that
 * pipelines (Postfix does: MAIL, RCPT and DATA in one packet) gets three replies in one turn of
 * the event loop; corking until the loop moves on sends them in one write.
 */
function coalesceWrites(socket: Socket) {
  const write = socket.write;
  socket.write = function (this: Socket, ...args: unknown[]) {
    if (!this.writableCorked) {
      this.cork();
      setImmediate(() => this.uncork());
    }
    return (write as (...a: unknown[]) => boolean).apply(this, args);
  } as Socket['write'];
}

type Session = SMTPServerSession & { accepted?: Recipient[]; tls?: Peer['tls']; unknownRecipients?: number };

/** smtp-server's live connections (its own `connections` set), to end one whose DATA overran. */
type Connections = Set<{ id: string; send(code: number, message: string): void; close(): void }>;

function smtpError(message: string, responseCode: number): Error {
  return Object.assign(new Error(message), { responseCode });
}

/**
 * The ingest listener: SMTP, or LMTP behind Postfix. Recipients are resolved at RCPT TO (550 for
 * addresses that are not ours); the message is read into one buffer (bounded by SIZE, enforced
 * with 552, and by the listener's memory budget) and answered with 250 only once every recipient
 * has been committed. Every RCPT TO answered 250 gets the message: smtp-server keeps one envelope
 * entry per address whatever its case, so the session keeps its own list of what it accepted, and
 * LMTP answers once for each of them (RFC 2033).
 */
export class IngestServer {
  private server: SMTPServer;
  private listening = false;
  private budget: MemoryBudget;
  private recipients?: RecipientCache;
  /** the database's faults, met by every session while it is away: logged once, summed up, and ended */
  private readonly faults = new RepeatedFailures(log);

  constructor(private pool: pg.Pool, private opts: SmtpOptions) {
    if (opts.databaseUrl) this.recipients = new RecipientCache(pool, opts.databaseUrl);
    this.budget = new MemoryBudget(opts.memoryBytes ?? defaultMemoryBytes(opts.maxSize));
    const pem = opts.tls ? readTlsFiles(opts.tls) : null;
    const delay = { lmtp: opts.lmtp, configured: opts.greetingDelayMs ?? null };
    this.server = new GreetingServer({
      lmtp: opts.lmtp,
      name: 'listkeeper',
      banner: 'listkeeper ready',
      size: opts.maxSize,
      // Oversized messages are answered in onData, once per accepted recipient (LMTP).
      rejectOversized: false,
      authOptional: true,
      // STARTTLS only with a certificate of ours: smtp-server's built-in one is a placeholder.
      disabledCommands: pem ? ['AUTH'] : ['AUTH', 'STARTTLS'],
      ...(pem ?? {}),
      // XFORWARD only in LMTP mode, where the client is Postfix handing over what its own client
      // said (lmtp_send_xforward_command = yes): the checks then see the real IP and HELO. Facing
      // the internet (SMTP mode) any client could claim any address with it, so it is off there.
      useXForward: opts.lmtp,
      // The client's reverse name (for the Received line) through src/dns.ts, as every lookup: DNS_SERVERS applies.
      resolver: { reverse: (ip, cb) => void resolvers().reverse(ip).then((names) => cb(null, names), (err: Error) => cb(err)) },
      logger: false,
      maxClients: 500,
      onConnect: (session, cb) => {
        (session as Session).accepted = [];
        cb();
      },
      onSecure: (socket, session, cb) => {
        // For the Received line: the version the session settled on and its cipher.
        const tls = socket as TLSSocket;
        (session as Session).tls = { protocol: tls.getProtocol() ?? 'TLS', cipher: tls.getCipher()?.name ?? 'unknown' };
        cb();
      },
      onMailFrom: (_address, session, cb) => {
        if (opts.requireTls && !session.secure) return cb(smtpError('5.7.0 Must issue a STARTTLS command first', 530));
        // A new transaction: smtp-server has reset the envelope, this is our half of it.
        (session as Session).accepted = [];
        cb();
      },
      onRcptTo: (address, session, cb) => {
        this.onRcptTo(address.address, session as Session).then(() => cb(), (err: Error) => cb(err));
      },
      onData: (stream, session, cb) => {
        this.onData(stream, session as Session).then(
          (replies) => cb(null, replies as never),
          (err: Error) => cb(err),
        );
      },
    }, { delayMs: (peer) => greetingDelayMs(peer, delay), sessionLimit: (peer) => sessionLimit(peer, { lmtp: opts.lmtp }) });
    this.server.on('error', (err) => log.error({ err }, 'smtp server error'));
    this.server.server.on('connection', coalesceWrites);
  }

  private async onRcptTo(address: string, session: Session) {
    if ((session.accepted?.length ?? 0) >= MAX_RECIPIENTS) throw smtpError('4.5.3 too many recipients', 452);
    let resolved: ResolvedRecipient | null;
    try {
      resolved = this.recipients ? await this.recipients.resolve(address) : await resolveRecipient(this.pool, address);
    } catch (err) {
      // The database away: every session fails so until it is back, said once and summed up.
      if (waitsOut(err)) this.faults.failed('lookup', err, 'recipient lookup failed', { session: session.id });
      else log.error({ err, session: session.id }, 'recipient lookup failed');
      throw smtpError('4.3.0 temporary failure looking up the recipient', 451);
    }
    this.faults.ok('lookup');
    if (!resolved) {
      session.unknownRecipients = (session.unknownRecipients ?? 0) + 1;
      if (session.unknownRecipients > MAX_UNKNOWN_RECIPIENTS && sessionLimit(session.remoteAddress, { lmtp: !!this.opts.lmtp }) !== null) {
        log.warn({ session: session.id, peer: session.remoteAddress }, 'too many unknown recipients in one session: closing it');
        throw smtpError(`4.7.0 too many unknown recipients (more than ${MAX_UNKNOWN_RECIPIENTS}); closing the connection`, 421);
      }
      throw smtpError(`5.1.1 <${address}>: no such list here`, 550);
    }
    (session.accepted ??= []).push({ ...resolved, address: address.toLowerCase() });
  }

  private async onData(stream: SMTPServerDataStream, session: Session): Promise<(string | Error)[] | string> {
    const accepted = session.accepted ?? [];
    session.accepted = [];
    const chunks: Buffer[] = [];
    let size = 0;
    let reserved = 0;
    let refusal: { code: number; message: string } | null = null;
    const deadline = setTimeout(() => {
      refusal ??= { code: 451, message: '4.4.2 the message took too long to arrive; try again' };
      this.disconnect(session, 'DATA phase over its deadline');
    }, this.opts.dataTimeoutMs ?? 600_000);
    try {
      for await (const chunk of stream) {
        const bytes = chunk as Buffer;
        if (refusal || stream.sizeExceeded) continue; // drain without keeping
        if (size + bytes.length > SMALL_MESSAGE) {
          const need = size + bytes.length - SMALL_MESSAGE - reserved;
          if (!(await this.budget.reserve(need, reserved, this.opts.memoryWaitMs ?? 30_000))) {
            refusal = { code: 451, message: '4.3.1 too many large messages arriving at once; try again later' };
            chunks.length = 0;
            continue;
          }
          reserved += need;
        }
        chunks.push(bytes);
        size += bytes.length;
      }
      if (stream.sizeExceeded) refusal = { code: 552, message: `5.3.4 the message is larger than the limit of ${this.opts.maxSize} bytes` };
      if (refusal) {
        log.warn({ session: session.id, code: refusal.code, reason: refusal.message }, 'message refused while it arrived');
        if (this.opts.lmtp) return accepted.map(() => smtpError(refusal!.message, refusal!.code));
        throw smtpError(refusal.message, refusal.code);
      }
      return await this.take(session, accepted, Buffer.concat(chunks, size)).catch((err: Error & { responseCode?: number }) => {
        if (err.responseCode) throw err;
        // Anything unforeseen is ours to fix, never the sender's: 451 without our internals (in
        // LMTP once per accepted RCPT, as every other answer).
        if (waitsOut(err)) this.faults.failed('take', err, 'taking in a message failed', { session: session.id });
        else log.error({ err, session: session.id }, 'taking in a message failed');
        const failure = smtpError('4.3.0 temporary failure storing the message, try again later', 451);
        if (this.opts.lmtp) return accepted.map(() => failure);
        throw failure;
      });
    } finally {
      clearTimeout(deadline);
      chunks.length = 0;
      this.budget.release(reserved);
    }
  }

  /** Ends a session that holds its DATA phase open too long: 421, then the connection closes. */
  private disconnect(session: Session, why: string) {
    const connections = (this.server as unknown as { connections: Connections }).connections;
    for (const c of connections) {
      if (c.id !== session.id) continue;
      log.warn({ session: session.id, why }, 'closing an SMTP session');
      c.send(421, '4.4.2 listkeeper closing the connection: the message took too long');
      c.close();
    }
  }

  private async take(session: Session, accepted: Recipient[], raw: Buffer): Promise<(string | Error)[] | string> {
    // One delivery per address, however often (and in whatever case) it was given.
    const seen = new Set<string>();
    const unique = accepted.filter((r) => !seen.has(r.address) && seen.add(r.address));
    const mailFrom = session.envelope.mailFrom;
    const id = `${session.id}-${session.transaction}`;
    const forwarded = session.xForward?.has('ADDR') ?? false;
    const results = await receive(this.pool, {
      envelopeFrom: mailFrom ? mailFrom.address || null : null,
      // Behind Postfix (LMTP) the client is Postfix itself, unless XFORWARD named the one before it:
      // without that, the quotas on kept junk go by sender.
      client: this.opts.lmtp && !forwarded ? null : session.remoteAddress,
      // Over LMTP without XFORWARD the client is Postfix itself: SPF is left out then (post-authentication.ts).
      peer: { ...peerOf(session, id), ...(this.opts.lmtp && !forwarded ? { relay: true } : {}) },
      recipients: unique,
      raw,
      log: lazyChild(log, { session: session.id }),
    }, this.opts.settings ?? config());
    for (const r of results) smtpMessages.inc({ result: r ? 'rejected' : 'accepted' });
    const byAddress = new Map(unique.map((r, i) => [r.address, results[i]]));
    const ok = `2.0.0 Ok: queued as ${id}`;
    if (this.opts.lmtp) {
      // RFC 2033: one reply for every RCPT TO that was accepted, in order.
      return accepted.map((r) => {
        const failure = byAddress.get(r.address);
        return failure ? smtpError(failure.message, failure.responseCode) : ok;
      });
    }
    // SMTP has one reply for all recipients: the most serious failure wins.
    const failure = results.filter((r) => r !== null).sort((a, b) => b!.responseCode - a!.responseCode)[0];
    if (failure) throw smtpError(failure.message, failure.responseCode);
    return ok;
  }

  /**
   * Reads the certificate and key again (SIGHUP) for the connections that come next; sessions
   * already encrypted keep theirs. A file that cannot be used is logged and the old certificate
   * stays: a botched renewal never takes TLS down. Returns whether the new one is in use.
   */
  reloadTls(): boolean {
    if (!this.opts.tls) return false;
    let pem: { cert: string; key: string };
    try {
      pem = readTlsFiles(this.opts.tls);
    } catch (err) {
      log.error({ err: (err as Error).message }, 'TLS certificate not reloaded: the one loaded before stays in use');
      return false;
    }
    this.server.updateSecureContext(pem);
    log.info({ cert: this.opts.tls.certFile }, 'TLS certificate reloaded');
    return true;
  }

  async start(): Promise<AddressInfo> {
    await this.recipients?.start();
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port, this.opts.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.listening = true;
    const addr = this.server.server.address() as AddressInfo;
    log.info({ port: addr.port, lmtp: this.opts.lmtp, starttls: !!this.opts.tls, requireTls: !!this.opts.requireTls }, `${this.opts.lmtp ? 'LMTP' : 'SMTP'} ingest listening`);
    return addr;
  }

  /** Stops accepting; sessions in progress get 421. Idempotent. */
  async stop(): Promise<void> {
    if (!this.listening) return;
    this.listening = false;
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await this.recipients?.stop();
  }
}

/**
 * The client as the checks and the Received line see it: behind Postfix, the one XFORWARD named
 * (smtp-server puts it in the session). The reverse name is smtp-server's own lookup, or
 * XFORWARD NAME; "[ip]" is its stand-in when there is none.
 */
function peerOf(session: Session, id: string): Peer {
  const name = session.clientHostname;
  return {
    ip: session.remoteAddress || null,
    helo: session.hostNameAppearsAs || null,
    hostname: name && !name.startsWith('[') ? name : null,
    tls: session.secure ? session.tls ?? null : null,
    protocol: session.transmissionType,
    id,
  };
}
