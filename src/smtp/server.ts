import crypto from 'node:crypto';
import type { AddressInfo, Socket } from 'node:net';
import type pg from 'pg';
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import { resolveRecipient, type ResolvedRecipient } from '../db/lists.ts';
import { RecipientCache } from './recipient-cache.ts';
import { receive } from '../inbound.ts';
import { log } from '../log.ts';
import { smtpMessages } from '../metrics.ts';

export interface SmtpOptions {
  host: string;
  port: number;
  lmtp: boolean;
  maxSize: number;
  /** the database URL, for the LISTEN connection of the recipient cache; without it, no cache */
  databaseUrl?: string;
}

type Recipient = ResolvedRecipient & { address: string };

/**
 * Messages above this size are taken in one at a time: a session that crosses it waits (its socket
 * is simply not read, so TCP pushes back on the sender) until no other large message is in flight.
 * Memory is then bounded by one SIZE-limited message plus LARGE_MESSAGE bytes per session, instead
 * of growing with sessions × message size.
 */
const LARGE_MESSAGE = 1024 * 1024;

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

class Gate {
  private held = false;
  private waiters: (() => void)[] = [];
  async enter(): Promise<void> {
    if (!this.held) {
      this.held = true;
      return;
    }
    await new Promise<void>((resolve) => this.waiters.push(resolve));
  }
  leave(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.held = false;
  }
}
type Session = SMTPServerSession & { recipients?: Recipient[] };

function smtpError(message: string, responseCode: number): Error {
  return Object.assign(new Error(message), { responseCode });
}

/**
 * The ingest listener: SMTP, or LMTP behind Postfix. Recipients are resolved at RCPT TO (550 for
 * addresses that are not ours); the message is read into one buffer (bounded by SIZE, enforced
 * with 552) and answered with 250 only once every recipient has been committed.
 */
export class IngestServer {
  private server: SMTPServer;
  private listening = false;
  private largeMessages = new Gate();
  private recipients?: RecipientCache;

  constructor(private pool: pg.Pool, private opts: SmtpOptions) {
    if (opts.databaseUrl) this.recipients = new RecipientCache(pool, opts.databaseUrl);
    this.server = new SMTPServer({
      lmtp: opts.lmtp,
      name: 'listkeeper',
      banner: 'listkeeper ready',
      size: opts.maxSize,
      rejectOversized: true,
      authOptional: true,
      disabledCommands: ['AUTH', 'STARTTLS'],
      logger: false,
      maxClients: 500,
      onConnect: (session, cb) => {
        (session as Session).recipients = [];
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
    });
    this.server.on('error', (err) => log.error({ err }, 'smtp server error'));
    this.server.server.on('connection', coalesceWrites);
  }

  private async onRcptTo(address: string, session: Session) {
    let resolved: ResolvedRecipient | null;
    try {
      resolved = this.recipients ? await this.recipients.resolve(address) : await resolveRecipient(this.pool, address);
    } catch (err) {
      log.error({ err, session: session.id }, 'recipient lookup failed');
      throw smtpError('4.3.0 temporary failure looking up the recipient', 451);
    }
    if (!resolved) throw smtpError(`5.1.1 <${address}>: no such list here`, 550);
    // smtp-server resets the envelope between transactions but not our field: keep them in step.
    if (session.envelope.rcptTo.length === 0) session.recipients = [];
    session.recipients!.push({ ...resolved, address: address.toLowerCase() });
  }

  private async onData(stream: SMTPServerDataStream, session: Session): Promise<(string | Error)[] | string> {
    const chunks: Buffer[] = [];
    let size = 0;
    let large = false;
    try {
      for await (const chunk of stream) {
        if (stream.sizeExceeded) continue; // drain without keeping: the reply will be 552
        chunks.push(chunk as Buffer);
        size += (chunk as Buffer).length;
        if (!large && size > LARGE_MESSAGE) {
          await this.largeMessages.enter();
          large = true;
        }
      }
      if (stream.sizeExceeded) return 'too big'; // rejectOversized answers 552 for us
      return await this.take(session, Buffer.concat(chunks, size));
    } finally {
      if (large) this.largeMessages.leave();
    }
  }

  private async take(session: Session, raw: Buffer): Promise<(string | Error)[] | string> {
    const recipients = session.recipients!.slice(0, session.envelope.rcptTo.length);
    const mailFrom = session.envelope.mailFrom;
    const results = await receive(this.pool, {
      envelopeFrom: mailFrom ? mailFrom.address || null : null,
      recipients,
      raw,
      log: log.child({ session: session.id }),
    });
    session.recipients = [];
    for (const r of results) smtpMessages.inc({ result: r ? 'rejected' : 'accepted' });
    const replies = results.map((r) => (r ? smtpError(r.message, r.responseCode) : `2.0.0 Ok: queued as ${crypto.randomUUID()}`));
    if (this.opts.lmtp) return replies;
    // SMTP has one reply for all recipients: the most serious failure wins.
    const failure = results.filter((r) => r !== null).sort((a, b) => b!.responseCode - a!.responseCode)[0];
    if (failure) throw smtpError(failure.message, failure.responseCode);
    return replies[0] as string;
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
    log.info({ port: addr.port, lmtp: this.opts.lmtp }, `${this.opts.lmtp ? 'LMTP' : 'SMTP'} ingest listening`);
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
