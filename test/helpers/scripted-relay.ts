/*
 * A bare SMTP server on a real socket whose every step is scripted, for relay faults: a reply
 * code at any step (greeting, EHLO/HELO, MAIL, RCPT, DATA, the end of the message), a delay
 * before each reply or before one step's, a step it never answers (a black hole before the greeting, a stall after
 * the message) or hangs up at, a step it answers one continuation line at a time forever, and a
 * stop and a restart on the same port. smtp-server can do none of these.
 */

import net from 'node:net';

export type Step = 'greeting' | 'ehlo' | 'mail' | 'rcpt' | 'data' | 'dot';

export interface Script {
  /** replies by step (default 220 / 250 / 354) */
  replies?: Partial<Record<Step, string>>;
  /** wait this long before every reply */
  delayMs?: number;
  /** wait this long before the reply to these steps instead (a receiver that scans the message before it answers its end) */
  delays?: Partial<Record<Step, number>>;
  /** never answer this step (greeting: a black hole that accepts TCP and says nothing) */
  stall?: Step;
  /** close the connection at this step instead of answering it */
  hangUp?: Step;
  /** answer this step with one "250-" line every 200 ms, never ending the reply */
  trickle?: Step;
  /** offer STARTTLS, say 220 to it, then answer the TLS handshake with garbage */
  brokenTls?: boolean;
}

export interface Delivered {
  from: string;
  to: string[];
  raw: Buffer;
  /** the MAIL FROM command as sent, parameters included */
  mail: string;
  /** the name the client gave in EHLO/HELO/LHLO in this session */
  helo: string;
}

export interface ScriptedRelay {
  port: number;
  url: string;
  delivered: Delivered[];
  /** every command line received, in order, over all sessions (UTF-8) */
  commands: string[];
  /** sessions opened so far */
  sessions(): number;
  setScript(script: Script): void;
  /** closes the listener and every session: connections are refused until start() */
  pause(): Promise<void>;
  /** listens again on the same port */
  resume(): Promise<void>;
  stop(): Promise<void>;
}

const DEFAULTS: Record<Step, string> = {
  greeting: '220 scripted.test ESMTP',
  ehlo: '250-scripted.test\r\n250 8BITMIME',
  mail: '250 2.1.0 sender ok',
  rcpt: '250 2.1.5 recipient ok',
  data: '354 go ahead',
  dot: '250 2.0.0 queued',
};

/** `at`: another loopback address, and a port (another MX host on DELIVERY_MX_PORT) */
export async function startScriptedRelay(initial: Script = {}, at: { host?: string; port?: number } = {}): Promise<ScriptedRelay> {
  const host = at.host ?? '127.0.0.1';
  let script = initial;
  let opened = 0;
  const delivered: Delivered[] = [];
  const commands: string[] = [];
  const sockets = new Set<net.Socket>();
  const timers = new Set<NodeJS.Timeout>();

  const later = (fn: () => void, ms: number) => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };

  const session = (socket: net.Socket) => {
    opened++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let buffer = Buffer.alloc(0);
    let inData = false;
    let handshake = false;
    let from = '';
    let mailLine = '';
    let helo = '';
    let to: string[] = [];
    const reply = (step: Step, after?: () => void) => {
      const s = script;
      if (s.stall === step) return;
      if (s.hangUp === step) {
        socket.end();
        return;
      }
      const text = s.replies?.[step] ?? DEFAULTS[step];
      const send = () => {
        if (socket.destroyed) return;
        if (s.trickle === step) {
          const drip = () => {
            if (socket.destroyed) return;
            socket.write('250-still thinking\r\n');
            later(drip, 200);
          };
          return drip();
        }
        socket.write(`${text}\r\n`);
        after?.();
        // A 421 ends the session (RFC 5321 §3.8), as a real server does.
        if (text.startsWith('421')) socket.end();
      };
      const wait = s.delays?.[step] ?? s.delayMs;
      if (wait) later(send, wait);
      else send();
    };
    reply('greeting', () => {
      if ((script.replies?.greeting ?? DEFAULTS.greeting).startsWith('5')) socket.end();
    });
    socket.on('data', (chunk: Buffer) => {
      if (handshake) {
        // The client's TLS hello: answered with something that is not TLS.
        socket.write('this is not TLS\r\n');
        return;
      }
      buffer = Buffer.concat([buffer, chunk]);
      for (;;) {
        if (inData) {
          const end = buffer.indexOf('\r\n.\r\n');
          if (end < 0) return;
          const raw = buffer.subarray(0, end + 2);
          buffer = buffer.subarray(end + 5);
          inData = false;
          const text = script.replies?.dot ?? DEFAULTS.dot;
          const mail = { from, to, raw: Buffer.from(raw), mail: mailLine, helo };
          reply('dot', () => {
            if (text.startsWith('2')) delivered.push(mail);
          });
          continue;
        }
        const eol = buffer.indexOf('\r\n');
        if (eol < 0) return;
        const line = buffer.subarray(0, eol).toString('utf8');
        commands.push(line);
        buffer = buffer.subarray(eol + 2);
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === 'EHLO' && script.brokenTls) socket.write('250-scripted.test\r\n250 STARTTLS\r\n');
        else if (verb === 'STAR' && script.brokenTls) {
          socket.write('220 2.0.0 ready\r\n');
          handshake = true;
          return;
        }
        else if (verb === 'EHLO' || verb === 'HELO' || verb === 'LHLO') {
          helo = line.slice(5).trim();
          reply('ehlo');
        }
        else if (verb === 'MAIL') {
          from = /<([^>]*)>/.exec(line)?.[1] ?? '';
          mailLine = line;
          to = [];
          reply('mail');
        } else if (verb === 'RCPT') {
          const rcpt = /<([^>]*)>/.exec(line)?.[1] ?? '';
          const text = script.replies?.rcpt ?? DEFAULTS.rcpt;
          reply('rcpt', () => {
            if (text.startsWith('2')) to.push(rcpt.toLowerCase());
          });
        } else if (verb === 'DATA') {
          const text = script.replies?.data ?? DEFAULTS.data;
          reply('data', () => {
            if (text.startsWith('3')) inData = true;
          });
        } else if (verb === 'RSET' || verb === 'NOOP') socket.write('250 ok\r\n');
        else if (verb === 'QUIT') {
          socket.write('221 bye\r\n');
          socket.end();
        } else socket.write('502 5.5.2 not implemented\r\n');
      }
    });
  };

  let server = net.createServer(session);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;

  const closeAll = async () => {
    for (const t of timers) clearTimeout(t);
    timers.clear();
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };

  return {
    port,
    url: `smtp://${host}:${port}`,
    delivered,
    commands,
    sessions: () => opened,
    setScript: (s) => { script = s; },
    pause: closeAll,
    async resume() {
      server = net.createServer(session);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => resolve());
      });
    },
    stop: closeAll,
  };
}
