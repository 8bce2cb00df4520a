import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateListKey, type ListDkim } from '../src/core/list-dkim.ts';
import { createList } from '../src/db/lists.ts';
import { versionRefusal } from '../src/db/server-settings.ts';
import { dkimTxtValue } from '../src/mail/list-signing.ts';
import { makeCertificates, type TestCertificates } from './helpers/certificates.ts';
import { cli } from './helpers/cli.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { StubDns } from './helpers/stub-dns.ts';
import { OVERSIZED_RSA_KEY } from './helpers/keys.ts';

interface Finding {
  status: 'ok' | 'warn' | 'fail';
  check: string;
  what: string;
  fix: string | null;
}

let db: TestDatabase;
let dns: StubDns;
let dnsServer: string;
let dataDir: string;
let certs: TestCertificates;
let key: ListDkim;
const DOMAIN = 'lists.example.org';

beforeAll(async () => {
  db = await testDatabase();
  // A stub of our own (no default SPF): what it answers is what this file publishes.
  dns = new StubDns();
  dnsServer = await dns.start();
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'lk-doctor-'));
  certs = makeCertificates();
  const list = await createList(db.pool, { address: `dev@${DOMAIN}`, name: 'dev', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  key = await generateListKey(db.pool, list, { actor: 'test' });
  publishGoodRecords();
}, 60_000);

afterAll(async () => {
  await dns?.stop();
  await db?.drop();
  certs?.remove();
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
});

const dkimName = () => `${key.selector}._domainkey.${DOMAIN}`;

function publishGoodRecords() {
  dns.set(DOMAIN, { mx: [{ exchange: `mx.${DOMAIN}`, priority: 10 }], txt: ['v=spf1 a:mx.lists.example.org -all'] });
  dns.set(`_dmarc.${DOMAIN}`, { txt: ['v=DMARC1; p=reject; rua=mailto:dmarc@lists.example.org'] });
  // The value exactly as `listkeeper list dkim` prints it, less the zone-file syntax around it.
  const value = [...key.record.matchAll(/"([^"]*)"/g)].map((m) => m[1]).join('');
  dns.set(dkimName(), { txt: [value] });
}

function doctor(args: string[] = ['--json'], env: Record<string, string> = {}) {
  return cli(['doctor', ...args], { DATABASE_URL: db.url, DNS_SERVERS: dnsServer, MAIL_DOMAIN: DOMAIN, DATA_DIR: dataDir, ...env });
}

async function findings(env: Record<string, string> = {}) {
  const r = await doctor(['--json'], env);
  const out = JSON.parse(r.stdout) as { status: string; findings: Finding[] };
  return { code: r.code, ...out, of: (check: string) => out.findings.filter((f) => f.check === check) };
}

describe('listkeeper doctor', () => {
  it('finds a list domain with correct MX, SPF, DKIM and DMARC records in order, and exits 0', async () => {
    const r = await findings();
    expect(r.code).toBe(0);
    expect(r.of('dns.mx')).toEqual([{ status: 'ok', check: 'dns.mx', what: `${DOMAIN} MX 10 mx.${DOMAIN}`, fix: null }]);
    expect(r.of('dns.spf')).toEqual([expect.objectContaining({ status: 'ok', what: `${DOMAIN} SPF "v=spf1 a:mx.lists.example.org -all"` })]);
    expect(r.of('dns.dmarc')).toEqual([expect.objectContaining({ status: 'ok' })]);
    expect(r.of('dns.dkim')).toEqual([{ status: 'ok', check: 'dns.dkim', what: `dev@${DOMAIN} DKIM record ${dkimName()} holds its key`, fix: null }]);
    expect(r.of('database')).toEqual([expect.objectContaining({ status: 'ok', what: expect.stringMatching(/^PostgreSQL \d+/) })]);
    expect(r.of('migrations')).toEqual([expect.objectContaining({ status: 'ok' })]);
    expect(r.of('upgrade')).toEqual([expect.objectContaining({ status: 'ok' })]);
    expect(r.of('synchronous_commit')).toEqual([expect.objectContaining({ status: 'ok', what: 'synchronous_commit is on' })]);
    expect(r.of('max_locks_per_transaction')[0].what).toMatch(/^max_locks_per_transaction \d+ x \d+ connections = \d+ locks; listkeeper's group commit may hold 3156$/);
    expect(r.of('queue')).toEqual([expect.objectContaining({ status: 'ok', what: 'nothing waiting; no delivery worker running' })]);
    expect(r.of('tls')).toEqual([expect.objectContaining({ status: 'ok', what: expect.stringContaining('no certificate configured') })]);
    expect(r.of('disk')).toEqual([expect.objectContaining({ what: expect.stringMatching(new RegExp(`^DATA_DIR ${dataDir}: [\\d.]+ GiB free \\(\\d+%\\)$`)) })]);
    expect(r.status).not.toBe('fail');
  });

  it('prints JSON of {status, findings: [{status, check, what, fix}]} and one line per finding, its fix under it', async () => {
    dns.records.delete(`_dmarc.${DOMAIN}`);
    try {
      const json = await doctor(['--json']);
      const out = JSON.parse(json.stdout);
      expect(Object.keys(out)).toEqual(['status', 'findings']);
      expect(out.status).toBe('fail');
      for (const f of out.findings) {
        expect(Object.keys(f)).toEqual(['status', 'check', 'what', 'fix']);
        expect(['ok', 'warn', 'fail']).toContain(f.status);
        expect(f.fix === null).toBe(f.status === 'ok');
      }
      const text = await doctor([]);
      expect(text.code).toBe(1);
      const lines = text.stdout.trimEnd().split('\n');
      const dmarc = lines.findIndex((l) => /^fail +dns\.dmarc +lists\.example\.org has no DMARC record/.test(l));
      expect(dmarc).toBeGreaterThan(-1);
      expect(lines[dmarc + 1].trim()).toBe(`fix: publish _dmarc.${DOMAIN}. IN TXT "v=DMARC1; p=none; rua=mailto:postmaster@${DOMAIN}"`);
      expect(lines.at(-1)).toMatch(/^\d+ ok, \d+ warn, [1-9]\d* fail$/);
    } finally {
      publishGoodRecords();
    }
  });

  it('fails a list whose DKIM selector has no record, and the fix is the exact TXT record to publish', async () => {
    dns.records.delete(dkimName());
    try {
      const r = await findings();
      expect(r.code).toBe(1);
      expect(r.of('dns.dkim')).toEqual([{
        status: 'fail', check: 'dns.dkim',
        what: `dev@${DOMAIN} signs with selector ${key.selector}, but ${dkimName()} has no DKIM record: its copies fail DKIM`,
        fix: `publish ${key.record}`,
      }]);
    } finally {
      publishGoodRecords();
    }
  });

  it('fails a DKIM record that holds another key than the list signs with', async () => {
    const other = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    dns.set(dkimName(), { txt: [dkimTxtValue(other)] });
    try {
      const r = await findings();
      expect(r.code).toBe(1);
      expect(r.of('dns.dkim')).toEqual([expect.objectContaining({ status: 'fail', what: `the DKIM record at ${dkimName()} does not hold dev@${DOMAIN}'s public key: its copies fail DKIM`, fix: `publish ${key.record}` })]);
    } finally {
      publishGoodRecords();
    }
  });

  it('fails a list whose stored DKIM key cannot be read, and still runs every other check', async () => {
    const { rows: [saved] } = await db.pool.query(`select dkim_private_key from lists where address = $1`, [`dev@${DOMAIN}`]);
    await db.pool.query(`update lists set dkim_private_key = E'-----BEGIN PRIVATE KEY-----\\nAAAA\\n-----END PRIVATE KEY-----\\n' where address = $1`, [`dev@${DOMAIN}`]);
    try {
      const r = await findings();
      expect(r.code).toBe(1);
      expect(r.of('dns.dkim')).toEqual([expect.objectContaining({
        status: 'fail', what: expect.stringMatching(new RegExp(`^dev@${DOMAIN.replace(/\./g, '\\.')} has a DKIM private key that cannot be used \\(.+\\): its copies wait in the queue until it is replaced$`)),
        fix: `run "listkeeper list dkim dev@${DOMAIN} --generate" and publish the record it prints`,
      })]);
      expect(r.of('dns.mx')).toEqual([expect.objectContaining({ status: 'ok' })]);
    } finally {
      await db.pool.query(`update lists set dkim_private_key = $2 where address = $1`, [`dev@${DOMAIN}`, saved.dkim_private_key]);
    }
  });

  it('fails a list whose stored key delivery will not sign with (RSA over 4,096 bits, taken by an older release)', async () => {
    const { rows: [saved] } = await db.pool.query(`select dkim_private_key from lists where address = $1`, [`dev@${DOMAIN}`]);
    const huge = OVERSIZED_RSA_KEY;
    await db.pool.query(`update lists set dkim_private_key = $2 where address = $1`, [`dev@${DOMAIN}`, huge]);
    try {
      const r = await findings();
      expect(r.code).toBe(1);
      expect(r.of('dns.dkim')).toEqual([expect.objectContaining({
        status: 'fail',
        what: `dev@${DOMAIN} has a DKIM private key that cannot be used (the key must be an RSA key of 1024 to 4096 bits (2048 advised) or an Ed25519 key (got rsa 4104)): its copies wait in the queue until it is replaced`,
      })]);
    } finally {
      await db.pool.query(`update lists set dkim_private_key = $2 where address = $1`, [`dev@${DOMAIN}`, saved.dkim_private_key]);
    }
  });

  it('fails a domain without MX or SPF records, and warns of a list without a DKIM key', async () => {
    await createList(db.pool, { address: 'ops@other.example.org', name: 'ops', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
    try {
      const r = await findings();
      expect(r.code).toBe(1);
      expect(r.of('dns.mx')).toContainEqual(expect.objectContaining({ status: 'fail', what: 'other.example.org has no MX record: mail to its lists goes nowhere', fix: expect.stringContaining('publish other.example.org. IN MX 10 ') }));
      expect(r.of('dns.spf')).toContainEqual(expect.objectContaining({ status: 'fail', fix: expect.stringContaining('publish other.example.org. IN TXT "v=spf1 ') }));
      expect(r.of('dns.dkim')).toContainEqual({
        status: 'warn', check: 'dns.dkim', what: 'ops@other.example.org has no DKIM key: its copies go out unsigned',
        fix: 'run "listkeeper list dkim ops@other.example.org --generate" and publish the record it prints',
      });
    } finally {
      await db.pool.query(`delete from lists where address = 'ops@other.example.org'`);
    }
  });

  it('lists the DKIM findings together after every domain\'s MX, SPF and DMARC, a list without a key among them, in the documented order', async () => {
    await createList(db.pool, { address: 'ops@other.example.org', name: 'ops', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
    try {
      const r = await findings();
      const dns = r.findings.map((f) => f.check).filter((c) => c.startsWith('dns'));
      expect(dns).toEqual(['dns.mx', 'dns.spf', 'dns.dmarc', 'dns.mx', 'dns.spf', 'dns.dmarc', 'dns.dkim', 'dns.dkim']);
      expect(r.of('dns.dkim').map((f) => f.status)).toEqual(['ok', 'warn']);
      const checks = r.findings.map((f) => f.check);
      expect(checks.slice(0, 5)).toEqual(['database', 'migrations', 'upgrade', 'synchronous_commit', 'max_locks_per_transaction']);
      expect(checks.indexOf('queue')).toBeGreaterThan(checks.lastIndexOf('dns.dkim'));
      expect(checks.slice(-2)).toEqual(['tls', 'disk']);
    } finally {
      await db.pool.query(`delete from lists where address = 'ops@other.example.org'`);
    }
  });

  it('warns of a certificate that expires within 21 days, and fails an expired one', async () => {
    const file = (name: string) => path.join(certs.dir, name);
    const soon = await findings({ SMTP_TLS_CERT: file('good.pem'), SMTP_TLS_KEY: file('good.key') });
    expect(soon.of('tls')).toEqual([expect.objectContaining({
      status: 'warn', what: expect.stringMatching(new RegExp(`^SMTP_TLS_CERT ${file('good.pem')}: CN=localhost is valid until \\S+ \\([01] days\\)$`)),
      fix: expect.stringContaining('renew the certificate'),
    })]);
    expect(soon.code).toBe(0);

    const expired = await findings({ SMTP_TLS_CERT: file('expired.pem'), SMTP_TLS_KEY: file('expired.key') });
    expect(expired.of('tls')).toEqual([expect.objectContaining({ status: 'fail', what: `SMTP_TLS_CERT ${file('expired.pem')}: CN=localhost expired on 2020-01-02T00:00:00.000Z` })]);
    expect(expired.code).toBe(1);
  });

  it('warns when the oldest waiting message is over an hour old, and fails past DELIVERY_GIVE_UP_HOURS', async () => {
    const { rows } = await db.pool.query<{ id: number }>(`with m as (insert into outbound_mail (raw) values ('x') returning id)
      insert into outbox (kind, mail_id, recipient, domain, envelope_from, created_at)
      select 'notice', id, 'r@example.net', 'example.net', 'bounces@lists.example.org', now() - interval '2 hours' from m returning id`);
    try {
      const old = await findings();
      expect(old.of('queue')).toEqual([expect.objectContaining({ status: 'warn', what: expect.stringMatching(new RegExp(`^the oldest of 1 waiting message\\(s\\) was queued 2\\.0 h ago \\(#${rows[0].id} to r@example\\.net, 0 attempt\\(s\\)\\); no delivery worker running$`)) })]);
      expect(old.of('queue')[0].fix).toMatch(/^start a delivery worker \("listkeeper serve --worker"\); then run "listkeeper queue"/);
      expect(old.code).toBe(0);

      await db.pool.query(`update outbox set created_at = now() - interval '6 days' where id = $1`, [rows[0].id]);
      const older = await findings({ DELIVERY_GIVE_UP_HOURS: '120' });
      expect(older.of('queue')).toEqual([expect.objectContaining({ status: 'fail', what: expect.stringMatching(/6\.0 days ago .*: older than DELIVERY_GIVE_UP_HOURS \(120\)$/) })]);
      expect(older.code).toBe(1);
    } finally {
      await db.pool.query(`delete from outbox where id = $1`, [rows[0].id]);
    }
  });

  it('warns of a background conversion that no worker advances or whose last batch failed, and says when all are done', async () => {
    const { rows } = await db.pool.query<{ name: string }>('select name from conversions order by name');
    expect(rows.map((r) => r.name)).toContain('message-digests');
    try {
      const idle = await findings();
      expect(idle.of('conversions')).toEqual(rows.map((r) => expect.objectContaining({
        status: 'warn', what: expect.stringMatching(new RegExp(`^conversion ${r.name}: 0 row\\(s\\) done; not started$`)), fix: expect.stringContaining('listkeeper serve --worker'),
      })));
      await db.pool.query(`update conversions set rows_done = 1200, total_estimate = 5000, locked_by = 'w1', locked_at = now() - interval '3 minutes',
                                  error = 'canceling statement due to lock timeout', error_at = now() where name = 'message-digests'`);
      const failing = (await findings()).of('conversions').find((f) => f.what.startsWith('conversion message-digests'));
      expect(failing).toMatchObject({ status: 'warn', what: expect.stringMatching(/^conversion message-digests: 1,200 row\(s\) done of about 5,000; its last batch failed at .*: canceling statement due to lock timeout$/) });
      await db.pool.query(`update conversions set error = null, error_at = null where name = 'message-digests'`);
      expect((await findings()).of('conversions').find((f) => f.what.startsWith('conversion message-digests'))).toMatchObject({ status: 'ok', what: expect.stringMatching(/running \(last batch by w1\)$/) });
      await db.pool.query(`update conversions set done_at = now()`);
      expect((await findings()).of('conversions')).toEqual([expect.objectContaining({ status: 'ok', what: 'background conversions: all done' })]);
    } finally {
      await db.pool.query(`update conversions set done_at = null, rows_done = 0, total_estimate = null, locked_by = null, locked_at = null, error = null, error_at = null`);
    }
  });

  it('warns of a database migrated by a later release, and migrate says so too', async () => {
    await db.pool.query(`insert into schema_migrations (name) values ('9998_from_a_later_release.sql'), ('9999_and_another.sql')`);
    try {
      const r = await findings();
      expect(r.of('migrations')).toEqual([{
        status: 'warn', check: 'migrations', what: 'the database is newer than this listkeeper: 2 migration(s) of a later release (9998_from_a_later_release.sql, 9999_and_another.sql)',
        fix: 'upgrade this instance to the release that migrated the database (it runs on the newer schema only during a rolling upgrade)',
      }]);
      const m = await cli(['migrate'], { DATABASE_URL: db.url, DATA_DIR: dataDir });
      expect([m.code, m.stdout]).toEqual([0, 'nothing to apply, and the database is newer than this listkeeper: 2 migration(s) of a later release (9998_from_a_later_release.sql, 9999_and_another.sql)\n']);
      // Every migrating start says so too (serve's log; a command's stderr), not only migrate and doctor.
      const ls = await cli(['list', 'ls'], { DATABASE_URL: db.url, DATA_DIR: dataDir, LOG_LEVEL: undefined });
      expect(ls.code).toBe(0);
      expect(ls.stderr).toContain('the database is newer than this listkeeper: 2 migration(s) of a later release (9998_from_a_later_release.sql, 9999_and_another.sql); upgrade this instance');
    } finally {
      await db.pool.query(`delete from schema_migrations where name like '999%'`);
    }
  });

  it('fails a pending migration and synchronous_commit off, and does not migrate', async () => {
    const { rows } = await db.pool.query<{ name: string }>(`select name from schema_migrations order by name desc limit 1`);
    await db.pool.query(`delete from schema_migrations where name = $1`, [rows[0].name]);
    await db.pool.query(`alter database ${db.name} set synchronous_commit = off`);
    try {
      const r = await findings();
      expect(r.code).toBe(1);
      expect(r.of('migrations')).toEqual([{ status: 'fail', check: 'migrations', what: `1 migration(s) not applied: ${rows[0].name}`, fix: 'run "listkeeper migrate" (serve applies them at start-up too)' }]);
      expect(r.of('synchronous_commit')).toEqual([expect.objectContaining({ status: 'fail', fix: expect.stringContaining('ALTER SYSTEM SET synchronous_commit = on') })]);
      expect((await db.pool.query(`select 1 from schema_migrations where name = $1`, [rows[0].name])).rows).toEqual([]);
    } finally {
      await db.pool.query(`alter database ${db.name} reset synchronous_commit`);
      await db.pool.query(`insert into schema_migrations (name) values ($1) on conflict do nothing`, [rows[0].name]);
    }
  });

  it('fails, naming the database, when nothing answers at DATABASE_URL', async () => {
    const url = new URL(db.url);
    url.port = '1'; // nothing listens on port 1
    const r = await findings({ DATABASE_URL: url.toString() });
    expect(r.code).toBe(1);
    expect(r.findings[0]).toEqual(expect.objectContaining({ status: 'fail', check: 'database', what: expect.stringMatching(/^cannot reach the database: .*ECONNREFUSED/) }));
    expect(r.of('tls')).toHaveLength(1);
    expect(r.of('disk')).toHaveLength(1);
  });
});

describe('the PostgreSQL versions listkeeper runs on', () => {
  it('refuses a server older than the oldest it is tested with, in one line that says which it supports', () => {
    expect(versionRefusal(130004, '13.4')).toBe('PostgreSQL 13.4 is older than 15, the oldest listkeeper supports (it is tested with 15 and 18): upgrade the server');
    expect(versionRefusal(149999, '14.99')).toContain('older than 15');
    expect(versionRefusal(150019, '15.19 (Debian 15.19-0+deb12u1)')).toBeNull();
    expect(versionRefusal(180001, '18.1')).toBeNull();
  });

  it('accepts this machine’s server at start', async () => {
    const { rows } = await db.pool.query<{ num: number; version: string }>("select current_setting('server_version_num')::int as num, current_setting('server_version') as version");
    expect(versionRefusal(rows[0].num, rows[0].version)).toBeNull();
    const migrated = await cli(['migrate'], { DATABASE_URL: db.url });
    expect(migrated.code).toBe(0);
  });
});
