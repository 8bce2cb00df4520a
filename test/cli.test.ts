import os from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { cli } from './helpers/cli.ts';
import pg from 'pg';
import { hashToken } from '../src/auth/credentials.ts';
import { findList } from '../src/db/lists.ts';
import { confirm, requestSubscription } from '../src/core/subscriptions.ts';
import { config } from '../src/config.ts';

let db: TestDatabase;
let env: Record<string, string>;

beforeAll(async () => {
  db = await testDatabase();
  env = { DATABASE_URL: db.url, MAIL_DOMAIN: 'lists.example.org' };
});
afterAll(async () => { await db?.drop(); });

describe('listkeeper CLI', { timeout: 90_000 }, () => {
  it('prints help listing the commands', async () => {
    const r = await cli(['--help'], env);
    expect(r.code).toBe(0);
    for (const cmd of ['serve', 'migrate', 'list', 'subscribe', 'unsubscribe', 'members']) expect(r.stdout).toContain(cmd);
  });

  it('creates a list on MAIL_DOMAIN when the address has no @', async () => {
    const r = await cli(['list', 'create', 'dev', '--name', 'Developers', '--description', 'Talk about development', '--owner', 'Boss@Example.org', '--post-policy', 'open', '--archive', 'members'], env);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const show = await cli(['list', 'show', 'dev', '--json'], env);
    const info = JSON.parse(show.stdout);
    expect(info).toMatchObject({
      address: 'dev@lists.example.org', name: 'Developers', description: 'Talk about development',
      post_policy: 'open', subscribe_policy: 'confirm', archive: 'members', members: 0, messages: 0, owners: ['boss@example.org'],
    });
    // Audited as the panel's "New list" is, with the operating-system user as the actor.
    const pool = new pg.Pool({ connectionString: db.url });
    try {
      const { rows } = await pool.query(`select actor, action, list_address, target, detail from audit_log where action = 'list.create'`);
      expect(rows).toEqual([{ actor: `cli:${os.userInfo().username}`, action: 'list.create', list_address: 'dev@lists.example.org', target: 'dev@lists.example.org', detail: { owners: ['boss@example.org'] } }]);
    } finally {
      await pool.end();
    }
  });

  it('shows the list of MAIL_DOMAIN for an address without @, even when another domain has one of that name', async () => {
    for (const address of ['ops@other.example', 'ops', 'solo@other.example']) expect((await cli(['list', 'create', address], env)).code).toBe(0);
    expect(JSON.parse((await cli(['list', 'show', 'ops', '--json'], env)).stdout).address).toBe('ops@lists.example.org');
    expect(JSON.parse((await cli(['list', 'show', 'ops@other.example', '--json'], env)).stdout).address).toBe('ops@other.example');
    // No list of that name on MAIL_DOMAIN: the one list with the local part.
    expect(JSON.parse((await cli(['list', 'show', 'solo', '--json'], env)).stdout).address).toBe('solo@other.example');
    const none = await cli(['list', 'show', 'nothing'], env);
    expect(none.code).toBe(3);
    const pool = new pg.Pool({ connectionString: db.url });
    await pool.query(`delete from lists where local_part in ('ops', 'solo')`);
    await pool.end();
  });

  it('refuses a duplicate list, a bad policy and a reserved suffix with one clear line and a non-zero exit', async () => {
    const dup = await cli(['list', 'create', 'dev@lists.example.org'], env);
    expect(dup.code).not.toBe(0);
    expect(dup.stderr).toMatch(/already exists/);
    const bad = await cli(['list', 'create', 'qa', '--post-policy', 'sometimes'], env);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/--post-policy must be one of open, members, moderated/);
    const reserved = await cli(['list', 'create', 'dev-owner'], env);
    expect(reserved.code).not.toBe(0);
    expect(reserved.stderr).toMatch(/may not end in "-owner"/);
  });

  it('subscribes, lists and unsubscribes members with the documented JSON shape', async () => {
    const sub = await cli(['subscribe', 'dev', 'A@example.com', 'b@example.com', '--mode', 'digest'], env);
    expect(sub.code).toBe(0);
    expect(sub.stdout).toContain('a@example.com: added');
    const again = await cli(['subscribe', 'dev', 'a@example.com', '--mode', 'digest'], env);
    expect(again.stdout).toContain('already subscribed');
    await cli(['unsubscribe', 'dev', 'b@example.com'], env);
    const members = JSON.parse((await cli(['members', 'dev', '--json'], env)).stdout);
    expect(members).toEqual([
      { email: 'a@example.com', name: null, mode: 'digest', status: 'active', bounce_score: 0 },
      { email: 'b@example.com', name: null, mode: 'digest', status: 'unsubscribed', bounce_score: 0 },
    ]);
    const ls = JSON.parse((await cli(['list', 'ls', '--json'], env)).stdout);
    expect(ls).toHaveLength(1);
    expect(ls[0].members).toBe(1);
  });

  it('shows addresses whose subscription awaits confirmation as pending, until they confirm', async () => {
    const pool = new pg.Pool({ connectionString: db.url });
    try {
      const list = await findList(pool, 'dev');
      expect(await requestSubscription(pool, list, 'Newbie@example.com', { via: 'mail', mode: 'each', settings: config() })).toBe('pending');
      expect(await requestSubscription(pool, list, 'b@example.com', { via: 'web', mode: 'each', settings: config() })).toBe('pending');
      const members = JSON.parse((await cli(['members', 'dev', '--json'], env)).stdout);
      expect(members).toEqual([
        { email: 'a@example.com', name: null, mode: 'digest', status: 'active', bounce_score: 0 },
        { email: 'b@example.com', name: null, mode: 'each', status: 'pending', bounce_score: 0 },
        { email: 'newbie@example.com', name: null, mode: 'each', status: 'pending', bounce_score: 0 },
      ]);
      // Confirming turns the pending entry into an active member, listed once.
      const { rows } = await pool.query(`select id from subscription_requests where email = 'newbie@example.com'`);
      const token = '0123456789abcdef0123456789abcdef';
      await pool.query(`update subscription_requests set token_hash = $1 where id = $2`, [hashToken(token), rows[0].id]);
      expect((await confirm(pool, token, config())).state).toBe('done');
      const after = JSON.parse((await cli(['members', 'dev', '--json'], env)).stdout);
      expect(after.filter((m: { email: string }) => m.email === 'newbie@example.com')).toEqual([
        { email: 'newbie@example.com', name: null, mode: 'each', status: 'active', bounce_score: 0 },
      ]);
      await pool.query(`delete from subscription_requests`);
    } finally {
      await pool.end();
    }
  });

  it('rejects a malformed e-mail address without adding anyone', async () => {
    const r = await cli(['subscribe', 'dev', 'good@example.com', 'not-an-address'], env);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/"not-an-address" is not an e-mail address/);
    const members = JSON.parse((await cli(['members', 'dev', '--json'], env)).stdout);
    expect(members.map((m: { email: string }) => m.email)).not.toContain('good@example.com');
  });

  it('changes settings by name with list set, VALUE @FILE included, and refuses bad ones all at once without changing any', async () => {
    const footerFile = `${os.tmpdir()}/lk-footer-${process.pid}.txt`;
    const fs = await import('node:fs');
    fs.writeFileSync(footerFile, 'Unsubscribe: see List-Unsubscribe\n');
    await cli(['list', 'create', 'settable', '--owner', 'o@example.org'], env);
    const ok = await cli(['list', 'set', 'settable', 'subject_prefix=[settable]', 'post_policy=moderated', `footer=@${footerFile}`, 'reply_to_address=Replies@Example.org'], env);
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('changed subject_prefix, post_policy, footer, reply_to_address');
    const list = await findList(db.pool, 'settable@lists.example.org');
    expect(list).toMatchObject({ subject_prefix: '[settable]', post_policy: 'moderated', footer: 'Unsubscribe: see List-Unsubscribe', reply_to_address: 'replies@example.org' });
    // list show --json gives every setting by the name list set takes, never the private key.
    const shown = JSON.parse((await cli(['list', 'show', 'settable', '--json'], env)).stdout);
    expect(shown).toMatchObject({ subject_prefix: '[settable]', post_policy: 'moderated', reply_to_address: 'replies@example.org', auth_policy: 'hold', dkim_key: false });
    expect(shown).not.toHaveProperty('dkim_private_key');

    const bad = await cli(['list', 'set', 'settable', 'subject_prefix=[x]', 'post_policy=everyone', 'colour=blue', 'max_message_size=-1'], env);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('post_policy: must be one of open, members, moderated');
    expect(bad.stderr).toContain('colour: no such setting');
    expect(bad.stderr).toContain('max_message_size: must be a whole number');
    expect((await findList(db.pool, 'settable@lists.example.org')).subject_prefix).toBe('[settable]');

    const missing = await cli(['list', 'set', 'settable', `footer=@${footerFile}.missing`], env);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain('ENOENT');
    const { rows } = await db.pool.query(`select detail from audit_log where action = 'list.settings' and list_address = 'settable@lists.example.org'`);
    expect(rows).toHaveLength(1);
    expect(rows[0].detail).toMatchObject({ subject_prefix: '[settable]', post_policy: 'moderated' });
  });

  it('takes a DKIM key with list set only when it parses as a signing key, and never echoes it', async () => {
    const fs = await import('node:fs');
    const crypto = await import('node:crypto');
    await cli(['list', 'create', 'keyed', '--owner', 'o@example.org'], env);
    const good = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    // Looks like a PEM key (the armour is right) but the base64 inside is cut short.
    const lines = good.trim().split('\n');
    const broken = [...lines.slice(0, 6), lines[lines.length - 1]].join('\n');
    const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const file = (name: string, text: string) => { const f = `${os.tmpdir()}/lk-${name}-${process.pid}.pem`; fs.writeFileSync(f, text); return f; };

    const bad = await cli(['list', 'set', 'keyed', `dkim_private_key=@${file('broken', broken)}`], env);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('dkim_private_key: must be a PEM private key that parses');
    expect(bad.stderr).not.toContain(lines[2]);
    const wrongType = await cli(['list', 'set', 'keyed', `dkim_private_key=@${file('ec', ec)}`], env);
    expect(wrongType.code).not.toBe(0);
    expect(wrongType.stderr).toContain('an RSA key of at least 1024 bits (2048 advised) or an Ed25519 key (got ec)');
    expect((await findList(db.pool, 'keyed@lists.example.org')).dkim_private_key).toBeNull();

    const ok = await cli(['list', 'set', 'keyed', `dkim_private_key=@${file('good', good)}`, 'dkim_selector=mine', 'dkim_domain=lists.example.org'], env);
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect((await findList(db.pool, 'keyed@lists.example.org')).dkim_private_key).toBe(good.trim());
    // Without --generate: the record of the stored key, its public half derived from it.
    const show = await cli(['list', 'dkim', 'keyed'], env);
    expect(show.code).toBe(0);
    const pub = crypto.createPublicKey(good).export({ type: 'spki', format: 'der' }).toString('base64');
    const record = show.stdout.split('\n').find((l) => l.startsWith('mine._domainkey.lists.example.org. IN TXT '))!;
    expect(JSON.parse(`[${record.slice(record.indexOf('TXT ') + 4).replace(/" "/g, '","')}]`).join('')).toBe(`v=DKIM1; k=rsa; p=${pub}`);
  });

  it('makes a list\'s DKIM key with list dkim --generate and prints the DNS record to publish, in strings of at most 255 characters', async () => {
    await cli(['list', 'create', 'gen', '--owner', 'o@example.org'], env);
    const none = await cli(['list', 'dkim', 'gen'], env);
    expect(none.code).toBe(0);
    expect(none.stdout).toContain('gen@lists.example.org has no DKIM key: make one with "listkeeper list dkim gen@lists.example.org --generate"');

    const r = await cli(['list', 'dkim', 'gen', '--generate', '--selector', 'k2025'], env);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const list = await findList(db.pool, 'gen@lists.example.org');
    expect(list).toMatchObject({ dkim_domain: 'lists.example.org', dkim_selector: 'k2025' });
    const crypto = await import('node:crypto');
    const key = crypto.createPrivateKey(list.dkim_private_key!);
    expect(key.asymmetricKeyDetails?.modulusLength).toBe(2048);
    const record = r.stdout.split('\n').find((l) => l.startsWith('k2025._domainkey.lists.example.org. IN TXT "'))!;
    const strings = [...record.matchAll(/"([^"]*)"/g)].map((m) => m[1]);
    expect(strings.length).toBeGreaterThan(1);
    for (const s of strings) expect(s.length).toBeLessThanOrEqual(255);
    const pub = crypto.createPublicKey(key).export({ type: 'spki', format: 'der' }).toString('base64');
    expect(strings.join('')).toBe(`v=DKIM1; k=rsa; p=${pub}`);
    // The record shown later is the same one.
    expect((await cli(['list', 'dkim', 'gen'], env)).stdout).toContain(record);
    const { rows } = await db.pool.query(`select detail from audit_log where action = 'list.settings' and list_address = 'gen@lists.example.org'`);
    expect(rows.map((x) => x.detail)).toEqual([{ dkim_domain: 'lists.example.org', dkim_selector: 'k2025', dkim_private_key: 'replaced' }]);

    const badSelector = await cli(['list', 'dkim', 'gen', '--generate', '--selector', 'no spaces'], env);
    expect(badSelector.code).not.toBe(0);
    expect(badSelector.stderr).toContain('dkim_selector: must be letters, digits');
    // Without --selector: the list's own name and the day, so two lists of a domain never share a record.
    await cli(['list', 'create', 'ops.team', '--owner', 'o@example.org'], env);
    const dflt = await cli(['list', 'dkim', 'ops.team', '--generate'], env);
    expect(dflt.code).toBe(0);
    const day = new Date().toISOString().slice(0, 10).replace(/-/g, '');
    expect((await findList(db.pool, 'ops.team@lists.example.org')).dkim_selector).toBe(`ops-team-${day}`);
    expect(dflt.stdout).toContain(`ops-team-${day}._domainkey.lists.example.org. IN TXT "v=DKIM1; k=rsa; p=`);
  });

  it('reports an unknown list on stderr with a non-zero exit', async () => {
    const r = await cli(['members', 'nosuch'], env);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/no list nosuch/);
  });

  it('stops on invalid configuration with one line naming the variable', async () => {
    const r = await cli(['list', 'ls'], { ...env, SMTP_PORT: 'seventy' });
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/SMTP_PORT/);
    const url = await cli(['list', 'ls'], { ...env, PUBLIC_URL: 'ftp://nope' });
    expect(url.stderr).toMatch(/PUBLIC_URL/);
  });
});

describe('migrations', { timeout: 90_000 }, () => {
  it('two processes migrating an empty database at once: one migrates, the other waits, both succeed', async () => {
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    const name = `${db.name}_race`;
    await admin.query(`create database ${name}`);
    await admin.end();
    const u = new URL(db.url);
    u.pathname = `/${name}`;
    const raceEnv = { ...env, DATABASE_URL: u.toString() };
    const [a, b] = await Promise.all([cli(['migrate'], raceEnv), cli(['migrate'], raceEnv)]);
    expect([a.code, b.code, a.stderr + b.stderr]).toEqual([0, 0, '']);
    const client = new pg.Client({ connectionString: u.toString() });
    await client.connect();
    const { rows } = await client.query('select name, count(*)::int as n from schema_migrations group by name');
    await client.end();
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.every((r) => r.n === 1)).toBe(true);
    const drop = new pg.Client({ connectionString: db.url });
    await drop.connect();
    await drop.query(`drop database ${name} with (force)`);
    await drop.end();
  });
});
