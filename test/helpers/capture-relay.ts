/*
 * A real SMTP server on an ephemeral port that stands in for the relay (or a recipient's MX):
 * it records every envelope and message, and can be told to refuse recipients (4xx or 5xx at
 * RCPT TO) or to be slow, to exercise retries, bounces and crashes.
 */

import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { parseConfig, type Config } from '../../src/config.ts';
import type { Database } from '../../src/db/database.ts';
import { DeliveryWorker } from '../../src/delivery/worker.ts';
import { log } from '../../src/log.ts';

export interface Captured {
  from: string;
  to: string;
  raw: Buffer;
  /** the session was encrypted (smtps, or after STARTTLS) */
  secure: boolean;
  /** the name the client gave in EHLO */
  helo: string;
}

/** An AUTH the client attempted, and whether the channel was encrypted at that moment. */
export interface AuthAttempt {
  user: string;
  pass: string;
  secure: boolean;
}

export interface RelayOptions {
  /** PEM key and certificate: STARTTLS is offered (or TLS from the first byte with `secure`) */
  tls?: { key: string; cert: string };
  secure?: boolean;
  /** AUTH is offered, even over a clear channel (to prove the client does not use it there) */
  auth?: { user: string; pass: string };
}

export type RcptRule = (address: string, attempt: number) => { code: number; message: string } | null;

export interface CaptureRelay {
  port: number;
  url: string;
  messages: Captured[];
  /** RCPT TO attempts per address */
  attempts: Map<string, number>;
  setRule(rule: RcptRule | null): void;
  /** refuse the message after DATA for a recipient (content refusals) */
  setDataRule(rule: RcptRule | null): void;
  setDelay(ms: number): void;
  auths: AuthAttempt[];
  /** resolves once `n` messages have arrived (throws after timeoutMs) */
  waitFor(n: number, timeoutMs?: number): Promise<Captured[]>;
  to(address: string): Captured[];
  /**
   * The first message (to `address`, or to anyone when null) whose bytes contain `marker`, once it
   * has arrived (throws after timeoutMs). drained() returns when nothing is due, so a copy that
   * met a temporary failure under load and waits for its retry is not there yet: wait for it.
   */
  copy(address: string | null, marker: string, timeoutMs?: number): Promise<Captured>;
  clear(): void;
  stop(): Promise<void>;
}

export async function startCaptureRelay(opts: RelayOptions = {}): Promise<CaptureRelay> {
  const messages: Captured[] = [];
  const auths: AuthAttempt[] = [];
  const attempts = new Map<string, number>();
  let rule: RcptRule | null = null;
  let dataRule: RcptRule | null = null;
  let delay = 0;
  const waiters: (() => void)[] = [];
  /** What `found` gives once it gives something, checked as each message arrives (and every 200 ms); throws after timeoutMs. */
  async function arrival<T>(found: () => T | undefined, timeoutMs: number, failure: () => string): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = found();
      if (value !== undefined) return value;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`capture relay: ${failure()}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: [...(opts.auth ? [] : ['AUTH']), ...(opts.tls && !opts.secure ? [] : ['STARTTLS'])],
    secure: opts.secure ?? false,
    ...(opts.tls ?? {}),
    allowInsecureAuth: true,
    onAuth(auth, session, cb) {
      auths.push({ user: auth.username ?? '', pass: auth.password ?? '', secure: session.secure });
      if (opts.auth && auth.username === opts.auth.user && auth.password === opts.auth.pass) return cb(null, { user: auth.username });
      cb(Object.assign(new Error('5.7.8 authentication failed'), { responseCode: 535 }));
    },
    logger: false,
    size: 50 * 1024 * 1024,
    maxClients: 1000,
    onRcptTo(address, _session, cb) {
      const a = address.address.toLowerCase();
      const n = (attempts.get(a) ?? 0) + 1;
      attempts.set(a, n);
      const refusal = rule?.(a, n);
      if (refusal) return cb(Object.assign(new Error(refusal.message), { responseCode: refusal.code }));
      cb();
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const refusal = session.envelope.rcptTo.map((r) => dataRule?.(r.address.toLowerCase(), 1)).find(Boolean);
        if (refusal) return cb(Object.assign(new Error(refusal.message), { responseCode: refusal.code }));
        const finish = () => {
          const from = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
          for (const r of session.envelope.rcptTo) messages.push({ from, to: r.address.toLowerCase(), raw: Buffer.concat(chunks), secure: session.secure, helo: session.hostNameAppearsAs });
          for (const w of waiters.splice(0)) w();
          cb(null);
        };
        if (delay > 0) setTimeout(finish, delay);
        else finish();
      });
    },
  });
  // Clients that vanish (a worker killed mid-send) reset their connections: not an error here.
  server.on('error', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.server.address() as AddressInfo).port;
  return {
    port,
    url: `smtp://127.0.0.1:${port}`,
    messages,
    attempts,
    auths,
    setRule: (r) => { rule = r; },
    setDataRule: (r) => { dataRule = r; },
    setDelay: (ms) => { delay = ms; },
    async waitFor(n, timeoutMs = 15_000) {
      await arrival(() => (messages.length >= n ? messages : undefined), timeoutMs, () => `waited for ${n} messages, got ${messages.length}`);
      return messages;
    },
    to: (address) => messages.filter((m) => m.to === address.toLowerCase()),
    copy: (address, marker, timeoutMs = 15_000) => arrival(
      () => messages.find((m) => (address === null || m.to === address.toLowerCase()) && m.raw.includes(marker)),
      timeoutMs,
      () => `no message${address ? ` to ${address}` : ''} containing ${marker} within ${timeoutMs} ms`,
    ),
    clear: () => { messages.length = 0; attempts.clear(); auths.length = 0; },
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

// ---- the delivery worker against the capture relay ----


/** A configuration for workers in tests: the capture relay, quick polling, a short lease. */
export function workerConfig(relay: { url: string }, env: Record<string, string> = {}): Config {
  return parseConfig({
    MAIL_DOMAIN: 'lists.example.org',
    PUBLIC_URL: 'https://lists.example.org',
    RELAY_URL: relay.url,
    DELIVERY_POLL_MS: '100',
    DELIVERY_LEASE_SECONDS: '2',
    DELIVERY_CONNECTIONS: '4',
    LOG_LEVEL: 'silent',
    ...env,
  });
}

export async function startWorker(db: Database, cfg: Config, name?: string): Promise<DeliveryWorker> {
  log.level = cfg.logLevel;
  const worker = new DeliveryWorker(db.pool, db.url, cfg, { name });
  await worker.start();
  return worker;
}

/** Waits until the outbox has nothing left to send (queued rows due now, or rows being sent). */
export async function drained(db: Database, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await db.pool.query<{ n: number }>(
      `select count(*)::int as n from outbox where state = 'sending' or (state = 'queued' and run_at <= now())`);
    if (rows[0].n === 0) return;
    if (Date.now() > deadline) throw new Error(`outbox not drained: ${rows[0].n} rows left`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
