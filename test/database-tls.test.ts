/*
 * TLS to PostgreSQL (issue 14, item 7): a private server of the machine's PostgreSQL that accepts
 * TLS only (hostssl in pg_hba.conf, plain connections rejected), with a certificate from a test
 * CA, and listkeeper given `sslmode=verify-full&sslrootcert=CA` in DATABASE_URL. Every connection
 * it opens (pools, the search pool, LISTEN, the parse thread, the delivery lock) must be
 * encrypted; a server whose certificate the CA did not sign, or a URL without TLS, is refused
 * with a clear error.
 */

import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCertificates, type TestCertificates } from './helpers/certificates.ts';
import { cli, startServe, type RunningServe } from './helpers/cli.ts';
import { clusterRoot, PrivatePostgres } from './helpers/private-postgres.ts';
import { message, sendRaw } from './helpers/smtp.ts';

let certs: TestCertificates;
let tmp: string;
let server: PrivatePostgres;
let serve: RunningServe | undefined;

const url = (params: string, host = 'localhost') => server.url('lk', host, params);
const verified = () => url(`sslmode=verify-full&sslrootcert=${encodeURIComponent(certs.caFile)}`);

beforeAll(async () => {
  certs = makeCertificates();
  fs.chmodSync(certs.dir, 0o755);
  fs.chmodSync(certs.caFile, 0o644);
  tmp = clusterRoot('lk-dbtls-');
  // TLS required from every TCP client; the server also answers on 127.0.0.3, a name its
  // certificate does not carry.
  server = await PrivatePostgres.create(path.join(tmp, 'pg'), {
    conf: "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'",
    hba: 'hostssl all all 127.0.0.0/8 trust\nhostnossl all all 127.0.0.0/8 reject\n',
    listen: '127.0.0.1,127.0.0.3',
  });
  server.writeFile('server.crt', certs.good.cert);
  server.writeFile('server.key', certs.good.key, 0o600);
  server.start();
  const admin = new pg.Client({ connectionString: verified().replace('/lk?', '/postgres?') });
  await admin.connect();
  await admin.query('create database lk');
  await admin.end();
}, 120_000);

afterAll(async () => {
  serve?.child.kill('SIGKILL');
  server?.stop('immediate');
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  certs?.remove();
});

describe('TLS to PostgreSQL', () => {
  it('migrates and creates a list over a verified TLS connection', async () => {
    const env = { DATABASE_URL: verified(), MAIL_DOMAIN: 'lists.example.org' };
    const migrated = await cli(['migrate'], env);
    expect(migrated.stderr).toBe('');
    expect(migrated.code).toBe(0);
    const created = await cli(['list', 'create', 'dev@lists.example.org', '--name', 'Developers', '--post-policy', 'open'], env);
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
  }, 60_000);

  it('is refused, with the reason, by a server the CA did not certify, and without TLS', async () => {
    const wrongCa = path.join(tmp, 'other-ca.pem');
    fs.writeFileSync(wrongCa, certs.selfSignedWrongName.cert);
    const untrusted = await cli(['list', 'ls'], { DATABASE_URL: url(`sslmode=verify-full&sslrootcert=${encodeURIComponent(wrongCa)}`) });
    expect(untrusted.code).not.toBe(0);
    expect(untrusted.stderr).toMatch(/certificate|self.signed|unable to verify/i);
    const plain = await cli(['list', 'ls'], { DATABASE_URL: url('sslmode=disable') });
    expect(plain.code).not.toBe(0);
    expect(plain.stderr).toMatch(/no encryption|pg_hba\.conf/);
    // Verification includes the name: the certificate is for localhost and 127.0.0.1, and the
    // same server reached as 127.0.0.3 is refused (the test certificate names 127.0.0.2 too).
    const wrongName = await cli(['list', 'ls'], { DATABASE_URL: url(`sslmode=verify-full&sslrootcert=${encodeURIComponent(certs.caFile)}`, '127.0.0.3') });
    expect(wrongName.code).not.toBe(0);
    expect(wrongName.stderr).toMatch(/does not match|altnames/i);
    // One line that says why, not a stack.
    for (const r of [untrusted, plain, wrongName]) expect(r.stderr.split('\n').filter(Boolean).length).toBeLessThan(4);
  }, 60_000);

  it('serves mail and pages with every connection encrypted', async () => {
    serve = await startServe({ DATABASE_URL: verified(), WEB_PROCESSES: '1' }, ['--smtp', '--web', '--worker']);
    const id = 'tls-post@example.org';
    const sent = await sendRaw(serve.smtpPort, { from: 'alice@example.org', to: ['dev@lists.example.org'] }, message({ id, to: 'dev@lists.example.org', subject: 'Encrypted all the way' }));
    expect(sent.ok).toBe(true);
    // The archive page and a search (the search pool's connections) answer from the TLS server.
    const page = await (await fetch(`${serve.webUrl}/message-id/${id}`)).text();
    expect(page).toContain('Encrypted all the way');
    const search = await (await fetch(`${serve.webUrl}/search?q=encrypted`)).text();
    expect(search).toContain('1 message found');

    const admin = new pg.Client({ connectionString: verified() });
    await admin.connect();
    try {
      const { rows } = await admin.query<{ role: string; ssl: boolean }>(
        `select a.application_name as role, s.ssl from pg_stat_activity a join pg_stat_ssl s on s.pid = a.pid
          where a.application_name like 'listkeeper:%'`,
      );
      const roles = new Set(rows.map((r) => r.role.split(':')[2]));
      expect(roles.size).toBeGreaterThanOrEqual(3);
      expect(rows.filter((r) => !r.ssl)).toEqual([]);
    } finally {
      await admin.end();
    }
  }, 90_000);
});
