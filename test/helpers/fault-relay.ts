/*
 * An SMTP relay that misbehaves on demand, for delivery fault tests and the crash loop. It is a
 * small hand-written server (not smtp-server) because the faults must land at any step,
 * including the greeting, EHLO and the DATA command, which smtp-server has no hook for.
 *
 * At every step it can answer a chosen code, answer late, never answer (hang), or drop the
 * connection; the whole relay can go down and come back on the same port; it can offer STARTTLS
 * (with a good or a bad certificate) and AUTH, and records whether each message and each
 * password arrived over TLS. Messages are recorded with their envelope and exact bytes.
 */

import net from 'node:net';
import tls from 'node:tls';

export type RelayStep = 'connect' | 'ehlo' | 'starttls' | 'auth' | 'mail' | 'rcpt' | 'data' | 'dot';

export interface StepFault {
  /** answer this code (4xx or 5xx) instead of the normal reply; at `connect`, then hang up */
  code?: number;
  text?: string;
  /** wait this long before answering (a slow relay) */
  delayMs?: number;
  /** never answer: the client must give up on its own deadline */
  hang?: boolean;
  /** close the connection instead of answering */
  drop?: boolean;
  /** how many times the fault applies before it clears itself (default: until cleared) */
  times?: number;
  /** only for these recipients (rcpt, dot): lower-case address in, true when the fault applies */
  match?: (recipient: string) => boolean;
}

export interface RelayedMessage {
  from: string;
  to: string[];
  raw: Buffer;
  /** the Message-ID header, without brackets, or null */
  messageId: string | null;
  /** the message came over TLS (STARTTLS) */
  tls: boolean;
}

export interface AuthAttempt {
  user: string;
  pass: string;
  tls: boolean;
}

export interface FaultRelayOptions {
  /** listen on this port (0: any) */
  port?: number;
  /** offer STARTTLS with this key and certificate (PEM) */
  tls?: { key: string | Buffer; cert: string | Buffer };
  /** TLS from the first byte (an smtps:// relay, port 465 style) with this key and certificate */
  implicitTls?: { key: string | Buffer; cert: string | Buffer };
  /** offer AUTH PLAIN and LOGIN (any user and password is accepted, and recorded) */
  auth?: boolean;
}

export interface FaultRelay {
  port: number;
  url: string;
  messages: RelayedMessage[];
  auths: AuthAttempt[];
  /** connections accepted so far */
  connections: number;
  /** commands as received, one per line ("EHLO x", "MAIL FROM:<a>", "DATA", "."), for assertions */
  commands: string[];
  fail(step: RelayStep, fault: StepFault): void;
  clear(step?: RelayStep): void;
  /** every reply waits this long (0: none) */
  setDelay(ms: number): void;
  /** stops listening and drops every connection; up() listens again on the same port */
  down(): Promise<void>;
  up(): Promise<void>;
  isUp(): boolean;
  /** how many times each (Message-ID, recipient) pair arrived, keyed "id recipient" */
  copies(): Map<string, number>;
  waitFor(n: number, timeoutMs?: number): Promise<RelayedMessage[]>;
  stop(): Promise<void>;
}

const MAX_LINE = 64 * 1024;

export async function startFaultRelay(opts: FaultRelayOptions = {}): Promise<FaultRelay> {
  const faults = new Map<RelayStep, StepFault>();
  const sockets = new Set<net.Socket>();
  const messages: RelayedMessage[] = [];
  const auths: AuthAttempt[] = [];
  const commands: string[] = [];
  const waiters: (() => void)[] = [];
  let delay = 0;
  let connections = 0;
  let server: net.Server | null = null;
  let port = opts.port ?? 0;

  /** The fault for a step, used up by one: null when the step should answer normally. */
  const take = (step: RelayStep, recipient?: string): StepFault | null => {
    const f = faults.get(step);
    if (!f) return null;
    if (f.match && (recipient === undefined || !f.match(recipient))) return null;
    if (f.times !== undefined) {
      f.times -= 1;
      if (f.times <= 0) faults.delete(step);
    }
    return f;
  };

  const session = (plain: net.Socket) => {
    connections++;
    sockets.add(plain);
    plain.on('close', () => sockets.delete(plain));
    plain.on('error', () => undefined);
    plain.setNoDelay(true);
    let socket: net.Socket | tls.TLSSocket = plain;
    let secure = plain instanceof tls.TLSSocket;
    let buffer: Buffer = Buffer.alloc(0);
    let mode: 'command' | 'data' | 'auth-plain' | 'auth-user' | 'auth-pass' | 'closed' = 'command';
    let busy = false;
    let authUser = '';
    let from: string | null = null;
    let to: string[] = [];

    const reply = (lines: string | string[]) => {
      const all = Array.isArray(lines) ? lines : [lines];
      const text = all.map((l, i) => (i < all.length - 1 ? `${l.slice(0, 3)}-${l.slice(4)}` : l)).join('\r\n');
      if (!socket.destroyed) socket.write(`${text}\r\n`);
    };

    /** Answers a step: the fault if one applies, else the normal reply (after any delay). */
    const answer = async (step: RelayStep, normal: string | string[], recipient?: string): Promise<boolean> => {
      const f = take(step, recipient);
      const wait = (f?.delayMs ?? 0) + delay;
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      if (f?.hang) {
        mode = 'closed'; // read nothing more; the client has to time out
        return false;
      }
      if (f?.drop) {
        socket.destroy();
        mode = 'closed';
        return false;
      }
      if (f?.code) {
        reply(`${f.code} ${f.text ?? (f.code >= 500 ? '5.0.0 refused by the fault relay' : '4.0.0 try again later (fault relay)')}`);
        if (step === 'connect') {
          socket.end();
          mode = 'closed';
        }
        return false;
      }
      reply(normal);
      return true;
    };

    const resetTransaction = () => {
      from = null;
      to = [];
    };

    const command = async (line: string) => {
      commands.push(mode === 'auth-pass' ? '(password)' : line);
      if (mode === 'auth-plain') {
        mode = 'command';
        return authPlain(line);
      }
      if (mode === 'auth-user') {
        authUser = Buffer.from(line, 'base64').toString('utf8');
        mode = 'auth-pass';
        return reply('334 UGFzc3dvcmQ6');
      }
      if (mode === 'auth-pass') {
        mode = 'command';
        auths.push({ user: authUser, pass: Buffer.from(line, 'base64').toString('utf8'), tls: secure });
        return void (await answer('auth', '235 2.7.0 Authentication successful'));
      }
      const verb = line.split(' ', 1)[0].toUpperCase();
      const arg = line.slice(verb.length).trim();
      switch (verb) {
        case 'EHLO':
        case 'HELO': {
          resetTransaction();
          const ext = ['250 fault-relay', '250 SIZE 52428800', '250 8BITMIME', '250 ENHANCEDSTATUSCODES'];
          if (opts.tls && !secure) ext.push('250 STARTTLS');
          if (opts.auth) ext.push('250 AUTH PLAIN LOGIN');
          return void (await answer('ehlo', verb === 'HELO' ? '250 fault-relay' : ext));
        }
        case 'STARTTLS': {
          if (!opts.tls || secure) return reply('502 5.5.1 STARTTLS not offered');
          if (!(await answer('starttls', '220 2.0.0 Ready to start TLS'))) return;
          // Everything after the 220 is TLS: stop reading the plain socket and wrap it.
          plain.removeAllListeners('data');
          buffer = Buffer.alloc(0);
          const secured = new tls.TLSSocket(plain, { isServer: true, key: opts.tls.key, cert: opts.tls.cert });
          secured.on('error', () => plain.destroy());
          secured.on('data', onData);
          socket = secured;
          secure = true;
          resetTransaction();
          return;
        }
        case 'AUTH': {
          const [mech, initial] = arg.split(/\s+/);
          if (!opts.auth) return reply('502 5.5.1 AUTH not offered');
          if (mech?.toUpperCase() === 'PLAIN') {
            if (initial) return authPlain(initial);
            mode = 'auth-plain';
            return reply('334 ');
          }
          if (mech?.toUpperCase() === 'LOGIN') {
            if (initial) {
              authUser = Buffer.from(initial, 'base64').toString('utf8');
              mode = 'auth-pass';
              return reply('334 UGFzc3dvcmQ6');
            }
            mode = 'auth-user';
            return reply('334 VXNlcm5hbWU6');
          }
          return reply('504 5.5.4 unknown mechanism');
        }
        case 'MAIL': {
          const m = /^FROM:\s*<([^>]*)>/i.exec(arg);
          if (!m) return reply('501 5.5.4 syntax: MAIL FROM:<address>');
          if (await answer('mail', '250 2.1.0 Ok')) {
            from = m[1];
            to = [];
          }
          return;
        }
        case 'RCPT': {
          const m = /^TO:\s*<([^>]*)>/i.exec(arg);
          if (from === null) return reply('503 5.5.1 MAIL first');
          if (!m) return reply('501 5.5.4 syntax: RCPT TO:<address>');
          const rcpt = m[1].toLowerCase();
          if (await answer('rcpt', '250 2.1.5 Ok', rcpt)) to.push(rcpt);
          return;
        }
        case 'DATA': {
          if (from === null || to.length === 0) return reply('503 5.5.1 RCPT first');
          if (await answer('data', '354 End data with <CR><LF>.<CR><LF>')) mode = 'data';
          return;
        }
        case 'RSET':
          resetTransaction();
          return reply('250 2.0.0 Ok');
        case 'NOOP':
          return reply('250 2.0.0 Ok');
        case 'QUIT':
          reply('221 2.0.0 Bye');
          mode = 'closed';
          socket.end();
          return;
        default:
          return reply('502 5.5.2 command not recognised');
      }
    };

    const authPlain = async (b64: string) => {
      const parts = Buffer.from(b64, 'base64').toString('utf8').split('\u0000');
      auths.push({ user: parts[1] ?? '', pass: parts[2] ?? '', tls: secure });
      await answer('auth', '235 2.7.0 Authentication successful');
    };

    const message = async (raw: Buffer) => {
      mode = 'command';
      commands.push('.');
      const recipient = to.find((r) => faults.get('dot')?.match?.(r)) ?? to[0];
      if (await answer('dot', '250 2.0.0 Ok: queued', recipient)) {
        messages.push({ from: from ?? '', to, raw, messageId: messageIdOf(raw), tls: secure });
        for (const w of waiters.splice(0)) w();
      }
      resetTransaction();
    };

    // One command (or one message) at a time, in order, even when the client pipelines.
    const drain = async () => {
      if (busy) return;
      busy = true;
      try {
        for (;;) {
          if (mode === 'closed') return;
          if (mode === 'data') {
            const end = dataEnd(buffer);
            if (end === null) return;
            const raw = unstuff(buffer.subarray(0, end.contentEnd));
            buffer = buffer.subarray(end.next);
            await message(raw);
            continue;
          }
          const nl = buffer.indexOf(0x0a);
          if (nl < 0) {
            if (buffer.length > MAX_LINE) socket.destroy();
            return;
          }
          const line = buffer.subarray(0, nl).toString('latin1').replace(/\r$/, '');
          buffer = buffer.subarray(nl + 1);
          await command(line);
        }
      } finally {
        busy = false;
      }
    };

    function onData(chunk: Buffer) {
      buffer = buffer.length ? Buffer.concat([buffer, chunk]) : chunk;
      drain().catch(() => socket.destroy());
    }
    plain.on('data', onData);
    void answer('connect', '220 fault-relay ESMTP ready');
  };

  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const s = opts.implicitTls ? tls.createServer({ ...opts.implicitTls }, session) : net.createServer(session);
      // A client that refuses our certificate ends the handshake: not an error of the relay.
      s.on('tlsClientError', () => undefined);
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => {
        s.off('error', reject);
        port = (s.address() as net.AddressInfo).port;
        server = s;
        resolve();
      });
    });
  await listen();

  const down = async () => {
    const s = server;
    server = null;
    for (const sock of sockets) sock.destroy();
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  };

  return {
    get port() {
      return port;
    },
    get url() {
      return `${opts.implicitTls ? 'smtps' : 'smtp'}://127.0.0.1:${port}`;
    },
    messages,
    auths,
    get connections() {
      return connections;
    },
    commands,
    fail: (step, fault) => faults.set(step, { ...fault }),
    clear: (step) => (step ? faults.delete(step) : faults.clear()),
    setDelay: (ms) => {
      delay = ms;
    },
    down,
    up: async () => {
      if (!server) await listen();
    },
    isUp: () => server !== null,
    copies() {
      const counts = new Map<string, number>();
      for (const m of messages) for (const r of m.to) counts.set(`${m.messageId} ${r}`, (counts.get(`${m.messageId} ${r}`) ?? 0) + 1);
      return counts;
    },
    async waitFor(n, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      while (messages.length < n) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`fault relay: waited for ${n} messages, got ${messages.length}`);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, Math.min(left, 200));
          waiters.push(() => {
            clearTimeout(t);
            resolve();
          });
        });
      }
      return messages;
    },
    stop: down,
  };
}

/** Where DATA ends: the CRLF.CRLF terminator (or a lone ".\r\n" as the first line). */
function dataEnd(buf: Buffer): { contentEnd: number; next: number } | null {
  if (buf.subarray(0, 3).equals(Buffer.from('.\r\n'))) return { contentEnd: 0, next: 3 };
  const i = buf.indexOf('\r\n.\r\n');
  return i < 0 ? null : { contentEnd: i + 2, next: i + 5 };
}

/** Removes the dot added in front of every line that starts with one (RFC 5321 4.5.2). */
function unstuff(raw: Buffer): Buffer {
  const s = raw.toString('latin1');
  const out = s.replace(/(^|\n)\./g, '$1');
  return out === s ? raw : Buffer.from(out, 'latin1');
}

function messageIdOf(raw: Buffer): string | null {
  const end = raw.indexOf('\r\n\r\n');
  const head = raw.subarray(0, end < 0 ? Math.min(raw.length, 64 * 1024) : end).toString('latin1');
  const m = /^message-id:[ \t]*(?:\r?\n[ \t]+)?<([^>\s]+)>/im.exec(head);
  return m ? m[1] : null;
}
