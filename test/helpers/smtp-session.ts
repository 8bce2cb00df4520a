/*
 * An SMTP client for fault tests: one connection, messages sent one after another over it, the
 * exact bytes given (bare LFs, NULs and 8-bit bytes included; only dot-stuffing is added), every
 * reply awaited with a deadline, and a connection that breaks failing what waits instead of
 * hanging. nodemailer would rewrite bare LFs, and the bench client never gives up.
 */

import net from 'node:net';

export interface Reply {
  code: number;
  text: string;
}

export interface Transaction {
  /** the reply that ended the transaction: to the end of data, or the refusal that stopped it */
  final: Reply;
  /** where it ended: 'mail', 'rcpt', 'data' (the DATA command) or 'dot' (the message) */
  stage: 'mail' | 'rcpt' | 'data' | 'dot';
  /** replies to RCPT TO, one per recipient */
  rcpt: Reply[];
}

export class ConnectionLost extends Error {}

export class SmtpSession {
  private socket!: net.Socket;
  private buffer = '';
  private lines: string[] = [];
  private waiting: { resolve: (r: Reply) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }[] = [];
  private closed: Error | null = null;

  private constructor(private readonly timeoutMs: number) {}

  static async open(port: number, opts: { timeoutMs?: number; helo?: string } = {}): Promise<SmtpSession> {
    const s = new SmtpSession(opts.timeoutMs ?? 30_000);
    await new Promise<void>((resolve, reject) => {
      s.socket = net.connect(port, '127.0.0.1', () => resolve());
      s.socket.once('error', reject);
    });
    s.socket.setNoDelay(true);
    s.socket.on('data', (d: Buffer) => s.onData(d.toString('latin1')));
    s.socket.on('error', (err) => s.fail(new ConnectionLost(`connection lost: ${err.message}`)));
    s.socket.on('close', () => s.fail(new ConnectionLost('connection closed by the server')));
    const greeting = await s.reply();
    if (greeting.code !== 220) {
      s.socket.destroy();
      throw new ConnectionLost(`greeting: ${greeting.code} ${greeting.text}`);
    }
    const ehlo = await s.command(`EHLO ${opts.helo ?? 'client.example'}`);
    if (ehlo.code !== 250) throw new ConnectionLost(`EHLO: ${ehlo.code} ${ehlo.text}`);
    return s;
  }

  get isOpen(): boolean {
    return this.closed === null;
  }

  private onData(text: string) {
    this.buffer += text;
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl).replace(/\r$/, '');
      this.buffer = this.buffer.slice(nl + 1);
      this.lines.push(line);
      // A reply ends with the line whose fourth character is not "-".
      if (line[3] === '-') continue;
      const all = this.lines.splice(0);
      const waiter = this.waiting.shift();
      if (!waiter) continue;
      clearTimeout(waiter.timer);
      waiter.resolve({ code: Number(line.slice(0, 3)) || 0, text: all.map((l) => l.slice(4)).join('\n') });
    }
  }

  private fail(err: Error) {
    this.closed ??= err;
    for (const w of this.waiting.splice(0)) {
      clearTimeout(w.timer);
      w.reject(this.closed);
    }
  }

  private reply(): Promise<Reply> {
    if (this.closed) return Promise.reject(this.closed);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.fail(new ConnectionLost(`no reply within ${this.timeoutMs} ms`));
        this.socket.destroy();
      }, this.timeoutMs);
      this.waiting.push({ resolve, reject, timer });
    });
  }

  /** Sends one command line and waits for its reply. */
  async command(line: string): Promise<Reply> {
    const r = this.reply();
    this.socket.write(`${line}\r\n`);
    return r;
  }

  /**
   * One mail transaction with the exact bytes of `raw`. A CRLF is added when the message does
   * not end with one (SMTP needs it before the final dot); `sentBytes` says what the server
   * should have taken in. Throws ConnectionLost when the connection breaks or a reply is late.
   */
  async send(from: string, to: string[], raw: Buffer): Promise<Transaction> {
    const mail = await this.command(`MAIL FROM:<${from}>`);
    if (mail.code !== 250) return { final: mail, stage: 'mail', rcpt: [] };
    const rcpt: Reply[] = [];
    for (const r of to) rcpt.push(await this.command(`RCPT TO:<${r}>`));
    if (!rcpt.some((r) => r.code === 250)) {
      await this.command('RSET');
      return { final: rcpt[rcpt.length - 1] ?? mail, stage: 'rcpt', rcpt };
    }
    const data = await this.command('DATA');
    if (data.code !== 354) return { final: data, stage: 'data', rcpt };
    const done = this.reply();
    this.socket.write(Buffer.concat([dotStuff(sentBytes(raw)), Buffer.from('.\r\n')]));
    return { final: await done, stage: 'dot', rcpt };
  }

  async quit(): Promise<void> {
    if (this.closed) return;
    await this.command('QUIT').catch(() => undefined);
    this.socket.destroy();
  }

  destroy() {
    this.socket.destroy();
  }
}

/** The bytes a server takes in for `raw`: the message, with a final CRLF added when missing. */
export function sentBytes(raw: Buffer): Buffer {
  const endsWithCrlf = raw.length >= 2 && raw[raw.length - 2] === 0x0d && raw[raw.length - 1] === 0x0a;
  return endsWithCrlf ? raw : Buffer.concat([raw, Buffer.from('\r\n')]);
}

/**
 * Doubles a dot that starts a line. A line starts after any LF, bare or not: that is where the
 * server (smtp-server) looks for a dot to remove, so stuffing there keeps every byte.
 */
export function dotStuff(raw: Buffer): Buffer {
  if (raw.indexOf('.') < 0) return raw;
  const s = raw.toString('latin1');
  const out = s.replace(/(^|\n)\./g, '$1..');
  return out === s ? raw : Buffer.from(out, 'latin1');
}
