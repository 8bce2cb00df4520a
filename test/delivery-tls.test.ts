import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../src/config.ts';
import { createList } from '../src/db/lists.ts';
import { addMember } from '../src/db/members.ts';
import { setResolvers } from '../src/dns.ts';
import type { DeliveryWorker } from '../src/delivery/worker.ts';
import { startCaptureRelay, startWorker, workerConfig, type CaptureRelay, type RelayOptions } from './helpers/capture-relay.ts';
import { cli } from './helpers/cli.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startScriptedRelay } from './helpers/scripted-relay.ts';
import { message, sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';
import { spawnWorker, until } from './helpers/worker-process.ts';

/**
 * Outbound transport security, against real TLS: certificates made here with
 * openssl (a CA, a server certificate for 127.0.0.1 and localhost, one for another name, a
 * self-signed one), smtp-server as the relay with STARTTLS (or TLS from the first byte) and AUTH
 * offered even in clear. Also: secrets never printed (configuration errors, logs, `queue`).
 */
let db: TestDatabase;
let smtp: RunningIngest;
let dir: string;
let worker: DeliveryWorker | undefined;
const relays: CaptureRelay[] = [];
const PASSWORD = 'hunter2-secret';
let n = 0;

const pem = (name: string) => fs.readFileSync(path.join(dir, name), 'utf8');
const ca = () => path.join(dir, 'ca.pem');
const certs = {
  good: () => ({ key: pem('good.key'), cert: pem('good.pem') }),
  otherName: () => ({ key: pem('other.key'), cert: pem('other.pem') }),
  selfSigned: () => ({ key: pem('self.key'), cert: pem('self.pem') }),
};

function openssl(...args: string[]) {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

function makeCertificates() {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=listkeeper test CA');
  for (const [name, san] of [['good', 'DNS:localhost,IP:127.0.0.1'], ['other', 'DNS:other.example']]) {
    openssl('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    fs.writeFileSync(path.join(dir, `${name}.ext`), `subjectAltName=${san}\n`);
    openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`);
  }
  openssl('req', '-x509', ...ec, '-keyout', 'self.key', '-out', 'self.pem', '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1');
}

async function relay(opts: RelayOptions): Promise<CaptureRelay> {
  const r = await startCaptureRelay(opts);
  relays.push(r);
  return r;
}

/** Posts to a fresh one-member list and waits for its copy's first attempt; returns the row. */
async function deliverOne(env: Record<string, string>, target: { url: string }) {
  const local = `tls${++n}`;
  const list = await createList(db.pool, { address: `${local}@lists.example.org`, name: local, description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  await addMember(db.pool, list.id, `reader@${local}.example`, 'each');
  worker = await startWorker(db, workerConfig(target, { DELIVERY_TIMEOUT_SECONDS: '5', DELIVERY_LEASE_SECONDS: '30', ...env }));
  const res = await sendRaw(smtp.port, { from: 'alice@example.org', to: [`${local}@lists.example.org`] }, message({ id: `${local}@example.org`, to: `${local}@lists.example.org` }));
  expect(res.ok, res.response).toBe(true);
  return until(async () => {
    const { rows } = await db.pool.query<{ state: string; attempts: number; last_error: string | null; recipient: string }>(
      `select o.state, o.attempts, o.last_error, o.recipient from outbox o where o.list_id = $1`, [list.id]);
    return rows[0] && rows[0].attempts > 0 && rows[0];
  }, `the first attempt at ${local}`);
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lk-tls-'));
  makeCertificates();
  db = await testDatabase();
  smtp = await startIngest(db.pool);
});

afterEach(async () => {
  await worker?.stop();
  worker = undefined;
  setResolvers();
  // A copy deferred here must not be retried by the next test's worker, to another relay.
  await db.pool.query(`update outbox set state = 'failed' where state in ('queued', 'sending')`);
});

afterAll(async () => {
  for (const r of relays) await r.stop();
  await smtp?.stop();
  await db?.drop();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('RELAY_TLS=opportunistic (the default)', () => {
  it('uses STARTTLS when the relay offers it, without checking the certificate', async () => {
    const r = await relay({ tls: certs.selfSigned() });
    const row = await deliverOne({}, r);
    expect(row.state).toBe('sent');
    expect(r.messages.map((m) => m.secure)).toEqual([true]);
  });

  it('sends in clear to a relay that offers no STARTTLS', async () => {
    const r = await relay({});
    expect((await deliverOne({}, r)).state).toBe('sent');
    expect(r.messages.map((m) => m.secure)).toEqual([false]);
  });

  it('tries once more in clear when the TLS handshake fails; require does not', async () => {
    const broken = await startScriptedRelay({ brokenTls: true });
    try {
      expect((await deliverOne({}, broken)).state).toBe('sent');
      expect(broken.delivered).toHaveLength(1);
      await worker!.stop();
      const row = await deliverOne({ RELAY_TLS: 'require' }, broken);
      expect(row.state).toBe('queued');
      expect(row.last_error).toMatch(/wrong version number/);
      expect(broken.delivered).toHaveLength(1);
    } finally {
      await broken.stop();
    }
  });

  it('says our name from SMTP_HELO_NAME in EHLO, MAIL_DOMAIN by default', async () => {
    const r = await relay({});
    await deliverOne({}, r);
    await worker!.stop();
    await deliverOne({ SMTP_HELO_NAME: 'mx-out.example.net' }, r);
    expect(r.messages.map((m) => m.helo)).toEqual(['lists.example.org', 'mx-out.example.net']);
  });
});

describe('RELAY_TLS=require', () => {
  it('defers the copy with the reason when the relay offers no STARTTLS', async () => {
    const r = await relay({});
    const row = await deliverOne({ RELAY_TLS: 'require' }, r);
    expect(row.state).toBe('queued');
    expect(row.last_error).toMatch(/offered no STARTTLS, and TLS is required \(RELAY_TLS=require\)/);
    expect(r.messages).toEqual([]);
  });

  it('accepts any certificate once TLS is up', async () => {
    const r = await relay({ tls: certs.otherName() });
    expect((await deliverOne({ RELAY_TLS: 'require' }, r)).state).toBe('sent');
    expect(r.messages.map((m) => m.secure)).toEqual([true]);
  });
});

describe('RELAY_TLS=verify', () => {
  it('delivers over TLS whose certificate chains to a trusted CA and names the host', async () => {
    const r = await relay({ tls: certs.good() });
    expect((await deliverOne({ RELAY_TLS: 'verify', RELAY_TLS_CA: ca() }, r)).state).toBe('sent');
    expect(r.messages.map((m) => m.secure)).toEqual([true]);
  });

  it.each([
    ['a certificate for another name', () => certs.otherName(), /altnames|Hostname\/IP does not match/i],
    ['a self-signed certificate', () => certs.selfSigned(), /self.signed/i],
  ])('defers the copy on %s', async (_name, cert, reason) => {
    const r = await relay({ tls: cert() });
    const row = await deliverOne({ RELAY_TLS: 'verify', RELAY_TLS_CA: ca() }, r);
    expect(row.state).toBe('queued');
    expect(row.last_error).toMatch(reason);
    expect(r.messages).toEqual([]);
  });
});

describe('credentials in RELAY_URL (they imply verify)', () => {
  const withAuth = (r: CaptureRelay) => ({ RELAY_URL: `smtp://relayuser:${PASSWORD}@127.0.0.1:${r.port}`, RELAY_TLS_CA: ca() });

  it('authenticates only after STARTTLS with a verified certificate', async () => {
    const r = await relay({ tls: certs.good(), auth: { user: 'relayuser', pass: PASSWORD } });
    expect((await deliverOne(withAuth(r), r)).state).toBe('sent');
    expect(r.auths).toEqual([{ user: 'relayuser', pass: PASSWORD, secure: true }]);
    expect(r.messages.map((m) => m.secure)).toEqual([true]);
  });

  it.each([
    ['a relay that offers AUTH but no STARTTLS', (): RelayOptions => ({ auth: { user: 'relayuser', pass: PASSWORD } }), {}, /offered no STARTTLS, and TLS is required \(credentials imply RELAY_TLS=verify\)/],
    ['a STARTTLS certificate for another name', (): RelayOptions => ({ tls: certs.otherName(), auth: { user: 'relayuser', pass: PASSWORD } }), {}, /altnames|does not match/i],
    ['a self-signed STARTTLS certificate, RELAY_TLS=opportunistic notwithstanding', (): RelayOptions => ({ tls: certs.selfSigned(), auth: { user: 'relayuser', pass: PASSWORD } }), { RELAY_TLS: 'opportunistic' }, /self.signed/i],
  ])('never sends the password to %s; the copy waits with the reason', async (_name, opts, extra, reason) => {
    const r = await relay(opts());
    const row = await deliverOne({ ...withAuth(r), ...extra }, r);
    expect(row.state).toBe('queued');
    expect(row.last_error).toMatch(reason);
    expect(r.auths).toEqual([]);
    expect(r.messages).toEqual([]);
  });

  it('never sends the password to an smtps:// relay whose certificate names another host', async () => {
    const r = await relay({ tls: certs.otherName(), secure: true, auth: { user: 'relayuser', pass: PASSWORD } });
    const row = await deliverOne({ RELAY_URL: `smtps://relayuser:${PASSWORD}@127.0.0.1:${r.port}`, RELAY_TLS_CA: ca() }, r);
    expect(row.state).toBe('queued');
    expect(row.last_error).toMatch(/altnames|does not match/i);
    expect(r.auths).toEqual([]);
  });
});

describe('direct delivery to MX hosts', () => {
  it('uses STARTTLS whenever the MX offers it', async () => {
    const r = await relay({ tls: certs.selfSigned() });
    setResolvers({ mx: async () => [{ exchange: '127.0.0.1', priority: 10 }] });
    const row = await deliverOne({ RELAY_URL: '', DELIVERY_MX_PORT: String(r.port), DELIVERY_MX_ALLOW: 'loopback' }, r);
    expect(row.state).toBe('sent');
    expect(r.messages.map((m) => [m.secure, m.helo])).toEqual([[true, 'lists.example.org']]);
  });
});

describe('secrets are never printed', () => {
  it('masks passwords in URLs of configuration errors, valid URL or not', () => {
    const cases: Record<string, string> = {
      RELAY_URL: `smtp://relayuser:${PASSWORD}@relay.example:notaport`,
      DATABASE_URL: `mysql://app:${PASSWORD}@db.example/lists`,
      DATABASE_READ_URL: `postgres//app:${PASSWORD}@db.example/lists`,
      // These parse as URLs (a scheme, then an opaque path), with no password to the URL parser.
      SPAM_CHECK_URL: `rspamd:${PASSWORD}@scanner.example`,
      PURGE_URL: `purger:${PASSWORD}@varnish.example/`,
    };
    for (const [name, value] of Object.entries(cases)) {
      let message = '';
      try {
        parseConfig({ [name]: value });
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        message = (err as Error).message;
      }
      expect(message).toContain(`Invalid configuration: ${name}=`);
      expect(message).toContain(':***@');
      expect(message).not.toContain(PASSWORD);
    }
  });

  it('says so in one line on stderr from the real command, without the password', async () => {
    const res = await cli(['queue'], { DATABASE_URL: `mysql://app:${PASSWORD}@db.example/lists` });
    expect(res.code).not.toBe(0);
    expect(res.stderr.trim().split('\n')).toHaveLength(1);
    expect(res.stderr).toContain('DATABASE_URL="mysql://app:***@db.example/lists"');
    expect(res.stderr + res.stdout).not.toContain(PASSWORD);
  });

  it('masks the password of a URL whose scheme was forgotten', async () => {
    const res = await cli(['queue'], { DATABASE_URL: `app:${PASSWORD}@db.example/lists` });
    expect(res.code).not.toBe(0);
    expect(res.stderr.trim().split('\n')).toHaveLength(1);
    expect(res.stderr).toContain('DATABASE_URL="app:***@db.example/lists"');
    expect(res.stderr + res.stdout).not.toContain(PASSWORD);
  });

  it("keeps the relay's password out of the worker's log", async () => {
    const r = await relay({});
    const proc = await spawnWorker({ DATABASE_URL: db.url, RELAY_URL: `smtp://relayuser:${PASSWORD}@127.0.0.1:${r.port}` });
    proc.child.kill('SIGTERM');
    await proc.exited;
    expect(proc.output()).toContain(`"relay":"smtp://relayuser:***@127.0.0.1:${r.port}"`);
    expect(proc.output()).toContain('"tls":"verify"');
    expect(proc.output()).not.toContain(PASSWORD);
  });

  it('masks a password quoted in an error shown by `queue`, text and JSON', async () => {
    await db.pool.query(
      `with m as (insert into outbound_mail (raw) values ('x') returning id)
       insert into outbox (kind, mail_id, recipient, domain, envelope_from, attempts, last_error, created_at, run_at)
       select 'notice', m.id, 'someone@example.net', 'example.net', 'bounces@lists.example.org', 3, $1, now() - interval '10 years', now() + interval '1 day' from m`,
      [`could not reach smtps://relayuser:${PASSWORD}@relay.example:465 (ETIMEDOUT)`],
    );
    for (const args of [['queue'], ['queue', '--json']]) {
      const res = await cli(args, { DATABASE_URL: db.url });
      expect(res.code, res.stderr).toBe(0);
      expect(res.stdout).toContain('smtps://relayuser:***@relay.example:465');
      expect(res.stdout).not.toContain(PASSWORD);
    }
  });
});
