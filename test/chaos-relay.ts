/*
 * The relay-fault sweep (relay faults and transport security), run by `npm run chaos -- relay`: the real
 * `listkeeper serve --worker` delivers one post to two members through a relay that misbehaves in
 * one way per case: 4xx or 5xx at each SMTP step, a hang, a dropped connection, slowness, an
 * outage, STARTTLS with a good or a bad certificate, AUTH offered in clear, an smtps:// relay with
 * a certificate for another name. Each case then checks what the issue requires:
 *
 * - nothing stays in flight: within the wait every copy is sent, failed, or deferred with a reason;
 * - a 4xx defers (never a failure), a 5xx to RCPT or to the message fails the copy;
 * - STARTTLS is used when offered; a password never goes over a clear channel, nor to a relay
 *   whose certificate does not verify; it never appears in the log;
 * - SIGTERM stops the worker within 10 s.
 */

import pg from 'pg';
import { createList } from '../src/db/lists.ts';
import { makeCertificates } from './helpers/certificates.ts';
import { startFaultRelay, type FaultRelay, type FaultRelayOptions, type RelayStep, type StepFault } from './helpers/fault-relay.ts';
import { spawnServe } from './helpers/serve-process.ts';
import { message, sendRaw, startIngest } from './helpers/smtp.ts';

export interface RelayCaseResult {
  name: string;
  outcome: string;
  problems: string[];
}

interface Case {
  name: string;
  relay?: (c: ReturnType<typeof makeCertificates>) => FaultRelayOptions;
  fault?: [RelayStep, StepFault];
  /** put user:password in RELAY_URL */
  credentials?: boolean;
  /** the relay is down when the post arrives and comes back after this long */
  outageMs?: number;
  waitMs?: number;
  expect: 'delivered' | 'deferred' | 'failed' | 'settled';
  overTls?: boolean;
}

const PASSWORD = 'Sw0rdfish-relay-secret';

function cases(): Case[] {
  const out: Case[] = [];
  for (const step of ['connect', 'ehlo', 'mail', 'rcpt', 'data', 'dot'] as RelayStep[]) {
    out.push({ name: `${step}: 451`, fault: [step, { code: step === 'connect' ? 421 : 451 }], expect: 'deferred' });
    // A 5xx to the recipient or to the message is final; earlier, the relay refuses the session.
    out.push({ name: `${step}: 554`, fault: [step, { code: step === 'rcpt' ? 550 : 554 }], expect: step === 'rcpt' || step === 'dot' ? 'failed' : 'settled' });
  }
  out.push(
    { name: 'connect: accepts, never greets', fault: ['connect', { hang: true }], expect: 'deferred', waitMs: 45_000 },
    { name: 'data: never answers DATA', fault: ['data', { hang: true }], expect: 'deferred', waitMs: 45_000 },
    { name: 'dot: never answers the message', fault: ['dot', { hang: true }], expect: 'deferred', waitMs: 45_000 },
    { name: 'rcpt: hangs up', fault: ['rcpt', { drop: true }], expect: 'deferred' },
    { name: 'dot: hangs up', fault: ['dot', { drop: true }], expect: 'deferred' },
    { name: 'slow: 2 s per reply', fault: ['mail', { delayMs: 2000 }], expect: 'delivered', waitMs: 30_000 },
    { name: 'down 3 s, then back', outageMs: 3000, expect: 'delivered', waitMs: 30_000 },
    { name: 'STARTTLS, trusted certificate', relay: (c) => ({ tls: c.good }), expect: 'delivered', overTls: true },
    { name: 'STARTTLS, self-signed for another name', relay: (c) => ({ tls: c.selfSignedWrongName }), expect: 'delivered', overTls: true },
    { name: 'AUTH offered without TLS', relay: () => ({ auth: true }), credentials: true, expect: 'settled' },
    { name: 'AUTH after STARTTLS, trusted certificate', relay: (c) => ({ tls: c.good, auth: true }), credentials: true, expect: 'delivered', overTls: true },
    { name: 'AUTH after STARTTLS, expired certificate', relay: (c) => ({ tls: c.expired, auth: true }), credentials: true, expect: 'settled' },
    { name: 'smtps://, certificate for another name', relay: (c) => ({ implicitTls: c.selfSignedWrongName, auth: true }), credentials: true, expect: 'settled' },
  );
  return out;
}

export async function runRelaySweep(o: { databaseUrl: string; print?: (line: string) => void }): Promise<RelayCaseResult[]> {
  const certs = makeCertificates();
  const pool = new pg.Pool({ connectionString: o.databaseUrl, max: 3 });
  const list = await createList(pool, { address: 'relay@lists.example.org', name: 'relay', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  await pool.query(`insert into members (list_id, email) values ($1, 'one@members.example'), ($1, 'two@members.example')`, [list.id]);
  const smtp = await startIngest(pool);
  const results: RelayCaseResult[] = [];
  try {
    for (const [i, c] of cases().entries()) {
      const r = await runCase(c, i, { pool, certs, smtpPort: smtp.port, databaseUrl: o.databaseUrl });
      results.push(r);
      o.print?.(`${r.problems.length ? 'FAIL' : 'ok  '} ${r.name}: ${r.outcome}${r.problems.length ? ` — ${r.problems.join('; ')}` : ''}`);
    }
  } finally {
    await smtp.stop();
    await pool.end();
    certs.remove();
  }
  return results;
}

async function runCase(c: Case, i: number, env: { pool: pg.Pool; certs: ReturnType<typeof makeCertificates>; smtpPort: number; databaseUrl: string }): Promise<RelayCaseResult> {
  const relay: FaultRelay = await startFaultRelay(c.relay?.(env.certs) ?? {});
  if (c.fault) relay.fail(c.fault[0], c.fault[1]);
  const url = new URL(relay.url);
  if (c.credentials) {
    url.username = 'lists';
    url.password = PASSWORD;
  }
  const serve = await spawnServe({
    roles: ['worker'],
    env: { DATABASE_URL: env.databaseUrl, RELAY_URL: url.toString(), DELIVERY_POLL_MS: '200', DELIVERY_LEASE_SECONDS: '5', DELIVERY_DATA_DONE_TIMEOUT_SECONDS: '5', NODE_EXTRA_CA_CERTS: env.certs.caFile },
  });
  const problems: string[] = [];
  let outcome = '';
  try {
    if (c.outageMs) await relay.down();
    const id = `relay-case-${i}-${Date.now()}@example.org`;
    const res = await sendRaw(env.smtpPort, { from: 'a@example.org', to: ['relay@lists.example.org'] }, message({ id, to: 'relay@lists.example.org' }));
    if (!res.ok) throw new Error(`the post was refused: ${res.response}`);
    if (c.outageMs) {
      await new Promise((r) => setTimeout(r, c.outageMs));
      await relay.up();
    }
    const rows = await settle(env.pool, id, c.expect === 'delivered', c.waitMs ?? 20_000);
    const states = rows.map((r) => `${r.state}${r.state === 'queued' ? `/${r.attempts}` : ''}`).join(', ');
    const reason = rows.find((r) => r.last_error)?.last_error?.replace(/\s+/g, ' ').slice(0, 90);
    const got = relay.messages.filter((m) => m.messageId === id);
    const overTls = got.filter((m) => m.tls).length;
    outcome = `${states || 'no rows'}${reason ? ` ("${reason}")` : ''}; relay got ${got.length}${got.length ? ` (${overTls} over TLS)` : ''}` +
      `${relay.auths.length ? `; AUTH ${relay.auths.map((a) => (a.tls ? 'over TLS' : 'IN CLEAR')).join(', ')}` : ''}`;

    const stuck = rows.filter((r) => r.state === 'sending' || (r.state === 'queued' && r.attempts === 0));
    if (stuck.length) problems.push(`${stuck.length} copies still in flight or never tried after ${(c.waitMs ?? 20_000) / 1000} s`);
    if (c.expect === 'delivered' && got.length < 2) problems.push('not delivered');
    if (c.expect === 'deferred' && !rows.every((r) => r.state === 'queued' && r.attempts > 0)) {
      if (!stuck.length) problems.push(`expected a deferral, got ${states}`);
    }
    if (c.expect === 'failed' && !rows.every((r) => r.state === 'failed')) problems.push(`expected the copies to fail, got ${states}`);
    if (c.overTls && overTls < got.length) problems.push('STARTTLS was offered but the copies went in clear');
    if (relay.auths.some((a) => !a.tls)) problems.push('the relay password went over a clear channel');
    if (c.name.includes('expired') || c.name.includes('another name')) {
      if (c.credentials && relay.auths.length) problems.push('the password went to a relay whose certificate does not verify');
    }
    if (serve.output().includes(PASSWORD)) problems.push('the relay password is in the log');
  } finally {
    const t = Date.now();
    serve.child.kill('SIGTERM');
    const stopped = await Promise.race([serve.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 10_000))]);
    if (!stopped) {
      problems.push('SIGTERM did not stop the worker within 10 s');
      await serve.kill('SIGKILL');
    } else outcome += `; stopped in ${Date.now() - t} ms`;
    await relay.stop();
    // What this case left unsent must not reach the next case's relay.
    await env.pool.query(`update outbox set state = 'failed', last_error = 'relay sweep: case over' where state in ('queued', 'sending')`);
  }
  return { name: c.name, outcome, problems };
}

interface Row {
  state: string;
  attempts: number;
  last_error: string | null;
}

/** The post's copies once each is sent, failed or deferred (or `delivered` wanted and not yet), or at the deadline. */
async function settle(pool: pg.Pool, id: string, wantSent: boolean, waitMs: number): Promise<Row[]> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const { rows } = await pool.query<Row>(
      `select o.state, o.attempts, o.last_error from outbox o join messages m on m.id = o.message_id where m.message_id = $1 order by o.recipient`, [id]);
    const done = rows.length > 0 && rows.every((r) => r.state === 'sent' || r.state === 'failed' || (!wantSent && r.state === 'queued' && r.attempts > 0));
    if (done || Date.now() > deadline) return rows;
    await new Promise((r) => setTimeout(r, 250));
  }
}
