import net from 'node:net';

/**
 * A lean SMTP client for load: one connection, messages sent one after another over it (no
 * reconnect per message), each reply awaited. Far cheaper in CPU than nodemailer, so the
 * figures measure the server rather than the client.
 */
export class SmtpSession {
  private socket!: net.Socket;
  private buffer = '';
  private waiting: ((line: string) => void)[] = [];

  static async open(port: number): Promise<SmtpSession> {
    const s = new SmtpSession();
    await new Promise<void>((resolve, reject) => {
      s.socket = net.connect(port, '127.0.0.1', () => resolve());
      s.socket.once('error', reject);
    });
    s.socket.setNoDelay(true);
    s.socket.on('data', (d) => s.onData(d.toString('latin1')));
    await s.reply();
    s.socket.write('EHLO bench.local\r\n');
    await s.reply();
    return s;
  }

  private onData(text: string) {
    this.buffer += text;
    let nl: number;
    while ((nl = this.buffer.indexOf('\r\n')) >= 0) {
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 2);
      // Multi-line replies ("250-...") end with a line whose 4th character is a space.
      if (line[3] === '-') continue;
      this.waiting.shift()?.(line);
    }
  }

  private reply(): Promise<string> {
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** Sends one message; resolves with the final reply line to the data. */
  async send(from: string, to: string, data: Buffer): Promise<string> {
    const replies = [this.reply(), this.reply(), this.reply()];
    this.socket.write(`MAIL FROM:<${from}>\r\nRCPT TO:<${to}>\r\nDATA\r\n`);
    const [mail, rcpt, data354] = await Promise.all(replies);
    if (!mail.startsWith('250') || !rcpt.startsWith('250') || !data354.startsWith('354')) {
      throw new Error(`refused: ${mail} / ${rcpt} / ${data354}`);
    }
    const done = this.reply();
    this.socket.write(data);
    this.socket.write('\r\n.\r\n');
    return done;
  }

  close() {
    this.socket.end('QUIT\r\n');
  }
}

/** Dot-stuffs a message for DATA. */
export function dotStuff(raw: string): Buffer {
  return Buffer.from(raw.replace(/\r?\n/g, '\r\n').replace(/^\./gm, '..'), 'utf8');
}
