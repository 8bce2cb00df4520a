import net from 'node:net';
import nodemailer from 'nodemailer';
import type pg from 'pg';
import { IngestServer, type SmtpOptions } from '../../src/smtp/server.ts';

export interface RunningIngest {
  port: number;
  stop(): Promise<void>;
}

/** The real ingest listener on an ephemeral port. */
export async function startIngest(pool: pg.Pool, opts: Partial<Omit<SmtpOptions, 'host' | 'port'>> = {}): Promise<RunningIngest> {
  const server = new IngestServer(pool, { host: '127.0.0.1', port: 0, ...opts, lmtp: opts.lmtp ?? false, maxSize: opts.maxSize ?? 10 * 1024 * 1024 });
  const addr = await server.start();
  return { port: addr.port, stop: () => server.stop() };
}

export interface SendResult {
  ok: boolean;
  responseCode?: number;
  response: string;
  accepted: string[];
  rejected: string[];
}

/** Sends exact bytes over SMTP (or LMTP) and reports what the server answered. */
export async function sendRaw(port: number, envelope: { from: string; to: string[] }, raw: Buffer | string, opts: { lmtp?: boolean } = {}): Promise<SendResult> {
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true, lmtp: opts.lmtp } as Parameters<typeof nodemailer.createTransport>[0]);
  try {
    const info = await transport.sendMail({ envelope, raw: Buffer.isBuffer(raw) ? raw : Buffer.from(raw) });
    return { ok: true, response: info.response, accepted: info.accepted as string[], rejected: info.rejected as string[] };
  } catch (err) {
    const e = err as { responseCode?: number; response?: string; message: string; rejected?: string[] };
    return { ok: false, responseCode: e.responseCode, response: e.response ?? e.message, accepted: [], rejected: e.rejected ?? [] };
  } finally {
    transport.close();
  }
}

/**
 * An SMTP conversation a command at a time, for tests that act between two commands: say() sends
 * one line (or a whole message ending in CRLF.CRLF) and resolves with the complete reply.
 */
export async function smtpDialogue(port: number): Promise<{ say(line: string): Promise<string>; close(): void }> {
  const socket = net.connect(port, '127.0.0.1');
  let buffered = '';
  let waiting: ((reply: string) => void) | null = null;
  socket.setEncoding('latin1');
  socket.on('data', (chunk: string) => {
    buffered += chunk;
    // A reply is complete at its last line, whose code is followed by a space.
    const end = /(^|\r\n)\d{3} [^\r\n]*\r\n$/.exec(buffered);
    if (end && waiting) {
      const reply = buffered;
      buffered = '';
      waiting(reply);
      waiting = null;
    }
  });
  const next = () => new Promise<string>((resolve) => (waiting = resolve));
  const greeting = await next();
  if (!greeting.startsWith('220')) throw new Error(`no greeting: ${greeting}`);
  return {
    say(line: string) {
      const reply = next();
      socket.write(`${line}\r\n`);
      return reply;
    },
    close: () => socket.end('QUIT\r\n'),
  };
}

/**
 * Alice's post `id` to LOCAL@lists.example.org over SMTP (a minimal message, `body` and `headers`
 * as message() takes them); throws with the server's answer unless it is 250.
 */
export async function postTo(port: number, local: string, id: string, opts: { body?: string; headers?: Record<string, string> } = {}): Promise<void> {
  const to = `${local}@lists.example.org`;
  const res = await sendRaw(port, { from: 'alice@example.org', to: [to] }, Buffer.from(message({ id, to, ...opts }), 'utf8'));
  if (!res.ok) throw new Error(`post ${id} to ${to} was refused: ${res.response}`);
}

/** A minimal RFC 5322 message; headers given override the defaults. */
export function message(opts: { id?: string | null; from?: string; to?: string; subject?: string; body?: string; headers?: Record<string, string>; date?: string }): string {
  const headers: Record<string, string> = {
    From: opts.from ?? 'Alice <alice@example.org>',
    To: opts.to ?? 'dev@lists.example.org',
    Subject: opts.subject ?? 'Hello',
    Date: opts.date ?? 'Mon, 02 Nov 2026 10:00:00 +0000',
    ...(opts.id === null ? {} : { 'Message-ID': `<${opts.id ?? `${Math.random().toString(36).slice(2)}@example.org`}>` }),
    'MIME-Version': '1.0',
    'Content-Type': 'text/plain; charset=utf-8',
    ...opts.headers,
  };
  const head = Object.entries(headers).map(([k, v]) => `${k}: ${v}`).join('\r\n');
  return `${head}\r\n\r\n${(opts.body ?? 'Hello, list.\n').replace(/\r?\n/g, '\r\n')}`;
}
