import os from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { indexWaitingForABackup } from './helpers/db-faults.ts';
import { BIN, cli, ROOT } from './helpers/cli.ts';
import { spawn } from 'node:child_process';
import { MIGRATION_LOCK } from '../src/db/migrate.ts';
import pg from 'pg';
import { hashToken } from '../src/auth/credentials.ts';
import { findList } from '../src/db/lists.ts';
import { confirm, requestSubscription } from '../src/core/subscriptions.ts';
import { config, parseConfig } from '../src/config.ts';
import { OVERSIZED_RSA_KEY } from './helpers/keys.ts';

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

  it('takes the list of MAIL_DOMAIN for a local part in import, export and held too, as in every other command', async () => {
    const fs = await import('node:fs');
    for (const address of ['ops@other.example', 'ops']) expect((await cli(['list', 'create', address], env)).code).toBe(0);
    const dir = fs.mkdtempSync(`${os.tmpdir()}/lk-ops-`);
    try {
      const mbox = `${dir}/ops.mbox`;
      fs.writeFileSync(mbox, 'From a@example.org Mon Jan  1 00:00:00 2024\nFrom: a@example.org\nSubject: ops post\nDate: Mon, 01 Jan 2024 10:00:00 +0000\nMessage-ID: <ops-local-part@example.org>\n\nbody\n');
      const imported = await cli(['import', 'ops', mbox], env);
      expect(imported.stderr).not.toContain('more than one list');
      expect(imported.code).toBe(0);
      expect(imported.stdout).toContain('into ops@lists.example.org: 1 messages added');
      const exported = await cli(['export', 'ops'], env);
      expect(exported.code).toBe(0);
      expect(exported.stdout).toContain('Message-ID: <ops-local-part@example.org>');
      const held = await cli(['held', 'ops', '--json'], env);
      expect(held.code).toBe(0);
      expect(JSON.parse(held.stdout)).toEqual([]);
      // Held names the list it looked at: the one of MAIL_DOMAIN, not the other domain's.
      expect((await cli(['held', 'ops'], env)).stdout).toContain('ops@lists.example.org');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
      const pool = new pg.Pool({ connectionString: db.url });
      await pool.query(`delete from lists where local_part = 'ops'`);
      await pool.end();
    }
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

  it('subscribe takes "Name <addr>", adds every valid address even when one is bad, reports each, and exits 1', async () => {
    const r = await cli(['subscribe', 'dev', 'good@example.com', 'not-an-address', 'Ann Example <Ann@Example.com>', '"Bo, B." <bo@example.com>'], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('listkeeper: "not-an-address" is not an e-mail address\n');
    expect(r.stdout).toBe('good@example.com: added\nann@example.com: added\nbo@example.com: added\n');
    const members = JSON.parse((await cli(['members', 'dev', '--json'], env)).stdout);
    expect(members.filter((m: { email: string }) => ['good@example.com', 'ann@example.com', 'bo@example.com'].includes(m.email)).map((m: { email: string; name: string | null }) => [m.email, m.name]))
      .toEqual([['ann@example.com', 'Ann Example'], ['bo@example.com', 'Bo, B.'], ['good@example.com', null]]);
    const json = await cli(['subscribe', 'dev', 'good@example.com', 'x@', 'new@example.com', '--json'], env);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toEqual([
      { email: 'good@example.com', name: null, result: 'unchanged' },
      { input: 'x@', result: 'invalid', error: '"x@" is not an e-mail address' },
      { email: 'new@example.com', name: null, result: 'added' },
    ]);
    const { rows } = await db.pool.query(`select actor, detail from audit_log where action = 'member.add' and detail->'addresses' ? 'ann@example.com'`);
    expect(rows).toEqual([{ actor: `cli:${os.userInfo().username}`, detail: { count: 3, mode: 'each', addresses: ['good@example.com', 'ann@example.com', 'bo@example.com'] } }]);
    const un = await cli(['unsubscribe', 'dev', 'good@example.com', 'nobody@example.com', 'bad', '--json'], env);
    expect(un.code).toBe(1);
    expect(JSON.parse(un.stdout)).toEqual([
      { email: 'good@example.com', result: 'unsubscribed' },
      { email: 'nobody@example.com', result: 'unchanged' },
      { input: 'bad', result: 'invalid', error: '"bad" is not an e-mail address' },
    ]);
    // A new name for an active member is taken (and said); no name given keeps the one there.
    const renamed = await cli(['subscribe', 'dev', 'Ann Renamed <ann@example.com>', 'bo@example.com', '--json'], env);
    expect(JSON.parse(renamed.stdout)).toEqual([
      { email: 'ann@example.com', name: 'Ann Renamed', result: 'updated' },
      { email: 'bo@example.com', name: null, result: 'unchanged' },
    ]);
    const names = await db.pool.query(`select email, name from members where email in ('ann@example.com', 'bo@example.com') order by email`);
    expect(names.rows).toEqual([{ email: 'ann@example.com', name: 'Ann Renamed' }, { email: 'bo@example.com', name: 'Bo, B.' }]);
    // A name copied from a From header, still in RFC 2047 encoded words, is stored decoded.
    const encoded = await cli(['subscribe', 'dev', '"=?utf-8?q?Jos=C3=A9?=" <jose@example.org>', '=?utf-8?b?w4FuZ2VsYQ==?= <angela@example.org>', '--json'], env);
    expect(JSON.parse(encoded.stdout)).toEqual([
      { email: 'jose@example.org', name: 'José', result: 'added' },
      { email: 'angela@example.org', name: 'Ángela', result: 'added' },
    ]);
    expect((await db.pool.query(`select name from members where email in ('jose@example.org', 'angela@example.org') order by email`)).rows).toEqual([{ name: 'Ángela' }, { name: 'José' }]);
    await cli(['unsubscribe', 'dev', 'ann@example.com', 'bo@example.com', 'new@example.com', 'jose@example.org', 'angela@example.org'], env);
    const unknown = await cli(['subscribe', 'nosuch', 'a@example.com'], env);
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toMatch(/no list nosuch/);
  });

  it('adds, lists and removes moderators, reporting each address, audited as cli:USER', async () => {
    await cli(['list', 'create', 'modded', '--owner', 'o@example.org'], env);
    const none = await cli(['moderators', 'modded'], env);
    expect(none.stdout).toContain('modded@lists.example.org has no moderators');
    const add = await cli(['moderators', 'modded', 'add', 'Mia@Example.org', 'nope', 'max@example.org'], env);
    expect(add.code).toBe(1);
    expect(add.stdout).toBe('mia@example.org: added\nmax@example.org: added\n');
    expect(add.stderr).toBe('listkeeper: "nope" is not an e-mail address\n');
    const again = await cli(['moderators', 'modded', 'add', 'mia@example.org', '--json'], env);
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toEqual([{ email: 'mia@example.org', result: 'unchanged' }]);
    expect(JSON.parse((await cli(['moderators', 'modded', '--json'], env)).stdout)).toEqual([{ email: 'max@example.org' }, { email: 'mia@example.org' }]);
    // The owner is not a moderator: removing them as one changes nothing.
    const rm = await cli(['moderators', 'modded', 'remove', 'max@example.org', 'o@example.org', '--json'], env);
    expect(JSON.parse(rm.stdout)).toEqual([{ email: 'max@example.org', result: 'removed' }, { email: 'o@example.org', result: 'unchanged' }]);
    expect((await cli(['moderators', 'modded'], env)).stdout).toBe('mia@example.org\n');
    expect(JSON.parse((await cli(['list', 'show', 'modded', '--json'], env)).stdout).owners).toEqual(['o@example.org']);
    const { rows } = await db.pool.query(`select actor, action, target, detail from audit_log where list_address = 'modded@lists.example.org' and action like 'role.%' order by id`);
    const actor = `cli:${os.userInfo().username}`;
    expect(rows).toEqual([
      { actor, action: 'role.add', target: 'mia@example.org', detail: { role: 'moderator' } },
      { actor, action: 'role.add', target: 'max@example.org', detail: { role: 'moderator' } },
      { actor, action: 'role.remove', target: 'max@example.org', detail: { role: 'moderator' } },
    ]);
    const badAction = await cli(['moderators', 'modded', 'promote', 'a@example.org'], env);
    expect(badAction.code).not.toBe(0);
    expect(badAction.stderr).toContain('action must be add or remove (got "promote")');
    const unknown = await cli(['moderators', 'nosuch', 'add', 'a@example.org'], env);
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toMatch(/no list nosuch/);
  });

  it('allows, bans (for N days) and removes sender rules by address or @domain, audited as cli:USER', async () => {
    const ban = await cli(['rules', 'modded', 'ban', '@Spam.example', '--days', '7', '--json'], env);
    expect(ban.stderr).toBe('');
    const banned = JSON.parse(ban.stdout);
    expect(banned).toMatchObject({ pattern: '@spam.example', kind: 'ban' });
    const days = (Date.parse(banned.expires_at) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(6.99);
    expect(days).toBeLessThan(7.01);
    const allow = await cli(['rules', 'modded', 'allow', 'Friend@Example.net'], env);
    expect(allow.code).toBe(0);
    expect(allow.stdout).toBe('friend@example.net: always accepted on modded@lists.example.org\n');
    const rules = JSON.parse((await cli(['rules', 'modded', '--json'], env)).stdout);
    expect(rules.map((r: { pattern: string; kind: string; expires_at: string | null }) => [r.pattern, r.kind, r.expires_at === null])).toEqual([['friend@example.net', 'allow', true], ['@spam.example', 'ban', false]]);
    // What the moderation rules read: the banned domain's posts are dropped.
    const { rows: facts } = await db.pool.query(`select email, kind from sender_rules where list_id = (select id from lists where local_part = 'modded') order by email`);
    expect(facts).toEqual([{ email: '@spam.example', kind: 'ban' }, { email: 'friend@example.net', kind: 'allow' }]);
    // Removed by the key the rule is stored under, printed and audited as that key (fullwidth letters map to ASCII).
    const rm = await cli(['rules', 'modded', 'remove', '@ＳＰＡＭ.example', '--json'], env);
    expect(JSON.parse(rm.stdout)).toEqual({ pattern: '@spam.example', removed: true });
    const again = await cli(['rules', 'modded', 'remove', '@spam.example'], env);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('@spam.example: there was no rule: nothing changed');
    const { rows } = await db.pool.query(`select actor, action, target from audit_log where list_address = 'modded@lists.example.org' and action like 'sender.%' order by id`);
    const actor = `cli:${os.userInfo().username}`;
    expect(rows).toEqual([
      { actor, action: 'sender.ban', target: '@spam.example' },
      { actor, action: 'sender.allow', target: 'friend@example.net' },
      { actor, action: 'sender.remove', target: '@spam.example' },
    ]);
    for (const [args, message] of [
      [['rules', 'modded', 'ban', 'not a pattern'], '"not a pattern" is not an e-mail address or @domain'],
      [['rules', 'modded', 'ban', '@'], '"@" is not an e-mail address or @domain'],
      [['rules', 'modded', 'ban', 'x@example.org', '--days', 'soon'], '--days must be a whole number from 1 to 99999, or nothing for no end (got "soon")'],
      [['rules', 'modded', 'remove', 'x@example.org', '--days', '3'], '--days goes with allow or ban'],
      [['rules', 'modded', 'block', 'x@example.org'], 'action must be one of allow, ban, remove (got "block")'],
      [['rules', 'modded', 'ban'], 'rules ban needs an e-mail address or @domain'],
    ] as [string[], string][]) {
      const r = await cli(args, env);
      expect(r.code, args.join(' ')).not.toBe(0);
      expect(r.stderr).toContain(message);
    }
    expect((await cli(['rules', 'nosuch', 'ban', '@x.example'], env)).code).toBe(3);
  });

  it('deletes a list for good (a script is not asked; a terminal would be, unless --yes), saying what went, audited', async () => {
    await cli(['list', 'create', 'doomed', '--owner', 'o@example.org'], env);
    await cli(['subscribe', 'doomed', 'a@example.com', 'b@example.com'], env);
    const r = await cli(['list', 'delete', 'doomed', '--json'], env);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ address: 'doomed@lists.example.org', deleted: true, members: 2, messages: 0, only_here: 0, roles: 1 });
    expect((await cli(['list', 'show', 'doomed'], env)).code).toBe(3);
    const { rows } = await db.pool.query(`select actor, list_id, target, detail from audit_log where action = 'list.delete'`);
    expect(rows).toEqual([{ actor: `cli:${os.userInfo().username}`, list_id: null, target: 'doomed@lists.example.org', detail: { members: 2, messages: 0, onlyHere: 0, roles: 1 } }]);
    await cli(['list', 'create', 'doomed2'], env);
    const text = await cli(['list', 'delete', 'doomed2', '--yes'], env);
    expect(text.stdout).toBe('deleted list doomed2@lists.example.org: 0 members, 0 owner and moderator roles, 0 archived messages that were in no other list\n');
    expect((await cli(['list', 'delete', 'nosuch', '--yes'], env)).code).toBe(3);
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
    // A name, description or subject prefix is one line: a line break is refused, on create too.
    const broken = await cli(['list', 'set', 'settable', 'description=first\nsecond', 'subject_prefix=[x]\r\nBcc: x@example.org', 'name=Two\tparts'], env);
    expect(broken.code).not.toBe(0);
    for (const name of ['description', 'subject_prefix', 'name']) expect(broken.stderr).toContain(`${name}: must be one line, without control characters`);
    expect((await findList(db.pool, 'settable@lists.example.org')).subject_prefix).toBe('[settable]');
    const created = await cli(['list', 'create', 'twolines', '--name', 'Two\nlines'], env);
    expect(created.code).not.toBe(0);
    expect(created.stderr).toContain('name: must be one line, without control characters');
    expect((await db.pool.query(`select 1 from lists where address = 'twolines@lists.example.org'`)).rowCount).toBe(0);
    // Numbers in decimal only: Number() would read 16 from "0x10" and 1000 from "1e3".
    for (const odd of ['0x10', '1e3', '0b11', ' ']) {
      const r = await cli(['list', 'set', 'settable', `max_message_size=${odd}`], env);
      expect(r.code, odd).not.toBe(0);
      expect(r.stderr, odd).toContain('max_message_size: must be a whole number');
    }
    expect((await cli(['list', 'set', 'settable', 'max_message_size=2048'], env)).code).toBe(0);
    expect((await findList(db.pool, 'settable@lists.example.org')).max_message_size).toBe(2048);

    const missing = await cli(['list', 'set', 'settable', `footer=@${footerFile}.missing`], env);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain('ENOENT');
    // A file far too big for a setting, or not text, is refused before anything changes.
    const big = `${footerFile}.big`;
    fs.writeFileSync(big, Buffer.alloc(1024 * 1024 + 1, 'a'));
    const tooBig = await cli(['list', 'set', 'settable', `footer=@${big}`], env);
    expect(tooBig.code).not.toBe(0);
    expect(tooBig.stderr).toContain(`${big} holds more than 1 MB, the most listkeeper reads for a setting's file`);
    const binary = `${footerFile}.bin`;
    fs.writeFileSync(binary, Buffer.from([0x66, 0x6f, 0xff, 0xfe, 0x6f]));
    const notText = await cli(['list', 'set', 'settable', `footer=@${binary}`], env);
    expect(notText.code).not.toBe(0);
    expect(notText.stderr).toContain(`${binary} is not UTF-8 text`);
    for (const f of [big, binary]) fs.rmSync(f);
    expect((await findList(db.pool, 'settable@lists.example.org')).footer).toBe('Unsubscribe: see List-Unsubscribe');
    const { rows } = await db.pool.query(`select detail from audit_log where action = 'list.settings' and list_address = 'settable@lists.example.org' order by id`);
    expect(rows).toHaveLength(2);
    expect(rows[0].detail).toMatchObject({ subject_prefix: '[settable]', post_policy: 'moderated' });
    expect(rows[1].detail).toMatchObject({ max_message_size: 2048 });
  });

  it('reads VALUE @FILE from a FIFO no further than 1 MB, refuses a directory, and drops a final CRLF', async () => {
    const fs = await import('node:fs');
    const { spawn, execFileSync } = await import('node:child_process');
    const dir = fs.mkdtempSync(`${os.tmpdir()}/lk-value-`);
    await cli(['list', 'create', 'fileread', '--owner', 'o@example.org'], env);
    // A FIFO has no size to check first: 2 MB written into one must be refused, not read whole.
    const fifo = `${dir}/fifo`;
    execFileSync('mkfifo', [fifo]);
    const writer = spawn('sh', ['-c', `head -c 2000000 /dev/zero | tr '\\0' a > ${fifo}`], { stdio: 'ignore' });
    try {
      const r = await cli(['list', 'set', 'fileread', `footer=@${fifo}`], env);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(`${fifo} holds more than 1 MB, the most listkeeper reads for a setting's file`);
    } finally {
      writer.kill();
    }
    const folder = await cli(['list', 'set', 'fileread', `footer=@${dir}`], env);
    expect(folder.code).not.toBe(0);
    expect(folder.stderr).toContain(`${dir} is a directory, not a regular file: a setting's file must be a regular file or a pipe`);
    fs.writeFileSync(`${dir}/prefix.txt`, '[x]\r\n');
    expect((await cli(['list', 'set', 'fileread', `subject_prefix=@${dir}/prefix.txt`], env)).code).toBe(0);
    expect((await findList(db.pool, 'fileread@lists.example.org')).subject_prefix).toBe('[x]');
    fs.rmSync(dir, { recursive: true });
  });

  it('ends quietly, with its own exit code, when the reader of its output has gone (| head)', async () => {
    const fs = await import('node:fs');
    const { execFileSync } = await import('node:child_process');
    await cli(['list', 'create', 'piped', '--description', 'output for a closed pipe'], env);
    const dir = fs.mkdtempSync(`${os.tmpdir()}/lk-pipe-`);
    try {
      // stdout is a FIFO whose only reader is closed before the command starts: its first write
      // meets EPIPE, as a command piped into `head` does once head has its lines.
      const fifo = `${dir}/out`;
      execFileSync('mkfifo', [fifo]);
      const reader = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
      const writer = fs.openSync(fifo, fs.constants.O_WRONLY);
      fs.closeSync(reader);
      for (const args of [['list', 'show', 'piped'], ['list', 'ls', '--json']]) {
        const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, LOG_LEVEL: 'silent', ...env }, stdio: ['ignore', writer, 'pipe'] });
        let stderr = '';
        child.stderr!.on('data', (d) => (stderr += d));
        const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
        expect(stderr).toBe('');
        expect(code).toBe(0);
      }
      fs.closeSync(writer);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses reply_to=address without a reply_to_address, as the panel does, rather than saying it changed and sending no Reply-To', async () => {
    await cli(['list', 'create', 'replies', '--owner', 'o@example.org'], env);
    const alone = await cli(['list', 'set', 'replies', 'reply_to=address'], env);
    expect(alone.code).toBe(1);
    expect(alone.stderr).toBe('listkeeper: reply_to_address: give the address replies should go to (reply_to=address sends them there)\n');
    expect((await findList(db.pool, 'replies@lists.example.org'))).toMatchObject({ reply_to: 'none', reply_to_address: null });
    const both = await cli(['list', 'set', 'replies', 'reply_to=address', 'reply_to_address=help@example.org'], env);
    expect(both.code).toBe(0);
    expect((await findList(db.pool, 'replies@lists.example.org'))).toMatchObject({ reply_to: 'address', reply_to_address: 'help@example.org' });
    // Taking the address away while replies go to it is refused too; another policy lets it go.
    const emptied = await cli(['list', 'set', 'replies', 'reply_to_address='], env);
    expect(emptied.code).toBe(1);
    expect(emptied.stderr).toContain('reply_to_address: give the address replies should go to');
    expect((await cli(['list', 'set', 'replies', 'reply_to=list', 'reply_to_address='], env)).code).toBe(0);
    expect((await findList(db.pool, 'replies@lists.example.org'))).toMatchObject({ reply_to: 'list', reply_to_address: null });
    // A list an earlier release left so still takes its other settings.
    await db.pool.query(`update lists set reply_to = 'address', reply_to_address = null where address = 'replies@lists.example.org'`);
    expect((await cli(['list', 'set', 'replies', 'subject_prefix=[r]'], env)).code).toBe(0);
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
    expect(wrongType.stderr).toContain('an RSA key of 1024 to 4096 bits (2048 advised) or an Ed25519 key (got ec)');
    // RFC 8301's largest: a bigger key made every delivery worker spend up to 313 ms per member's copy.
    const huge = OVERSIZED_RSA_KEY;
    const tooBig = await cli(['list', 'set', 'keyed', `dkim_private_key=@${file('huge', huge)}`], env);
    expect(tooBig.code).not.toBe(0);
    expect(tooBig.stderr).toContain('dkim_private_key: must be an RSA key of 1024 to 4096 bits (2048 advised) or an Ed25519 key (got rsa 4104)');
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

  it('refuses a held message id that is not a number it can look up with one line, not the database\'s error', async () => {
    for (const id of ['99999999999999999999999', '1e3', '-1', '']) {
      const r = await cli(['moderate', id, 'approve'], env);
      expect([r.code, r.stderr]).toEqual([1, `listkeeper: held message id must be a number (got "${id}")\n`]);
    }
  });

  it('reads a .env file in the working directory, under the environment, and stops on a malformed one with one line', async () => {
    const fs = await import('node:fs');
    const path = await import('node:path');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lk-dotenv-'));
    try {
      fs.writeFileSync(path.join(dir, '.env'), `# shared with serve\nexport DATABASE_URL=${db.url}\nMAIL_DOMAIN=dotenv.example\nWEB_PORT="9137"\nLOG_LEVEL=silent\n`);
      // DATABASE_URL only from the file; MAIL_DOMAIN from the environment, which wins.
      const r = await cli(['list', 'create', 'fromenv', '--owner', 'o@example.org'], { DATABASE_URL: undefined, MAIL_DOMAIN: 'lists.example.org' }, undefined, dir);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe('created list fromenv@lists.example.org\n');
      const fromFile = await cli(['list', 'create', 'fileonly'], { DATABASE_URL: undefined, MAIL_DOMAIN: undefined }, undefined, dir);
      expect(fromFile.stdout).toBe('created list fileonly@dotenv.example\n');
      // PUBLIC_URL unset: it follows WEB_PORT from the file, in the links the CLI prints as in mail.
      const admin = await cli(['admin', 'create', 'root@example.org'], { DATABASE_URL: undefined, PUBLIC_URL: undefined, WEB_PORT: undefined }, undefined, dir);
      expect(admin.stdout).toMatch(/^ {2}http:\/\/127\.0\.0\.1:9137\/login\//m);
      fs.writeFileSync(path.join(dir, '.env'), `MAIL_DOMAIN=ok.example\nSECRET_THING hunter2\n`);
      const bad = await cli(['list', 'ls'], { DATABASE_URL: undefined }, undefined, dir);
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toBe(`listkeeper: Invalid configuration: ${path.join(dir, '.env')} line 2: expected NAME=VALUE (a name of letters, digits and _), a # comment or a blank line\n`);
      expect(bad.stderr).not.toContain('hunter2');
      // A quoted value over several lines (a PEM key) is one variable, not malformed lines.
      fs.writeFileSync(path.join(dir, '.env'), `DATABASE_URL=${db.url}\nNOTE="first\nsecond"\nMAIL_DOMAIN=multi.example\n`);
      const multi = await cli(['list', 'create', 'multi'], { DATABASE_URL: undefined, MAIL_DOMAIN: undefined }, undefined, dir);
      expect(multi.stdout).toBe('created list multi@multi.example\n');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
      await db.pool.query(`delete from lists where local_part in ('fromenv', 'fileonly', 'multi')`);
    }
  });

  it('stops on a .env quote left open instead of reading the next lines into its value', async () => {
    const fs = await import('node:fs');
    const path = await import('node:path');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lk-dotenv-'));
    try {
      // Node's parser read NOTE as "x\nMAIL_DOMAIN=" and dropped MAIL_DOMAIN (DATABASE_URL alike):
      // the list was made on lists.localhost, with exit 0.
      fs.writeFileSync(path.join(dir, '.env'), 'NOTE="x\nMAIL_DOMAIN="open.example"\n');
      const open = await cli(['list', 'create', 'openquote'], { DATABASE_URL: db.url, MAIL_DOMAIN: undefined }, undefined, dir);
      expect([open.code, open.stdout]).toEqual([1, '']);
      expect(open.stderr).toBe(`listkeeper: Invalid configuration: ${path.join(dir, '.env')} line 1: a quoted value with more after its closing quote (a quote left open, or one inside the value): quote the value whole, once\n`);
      // A quote inside a value ended it there: the rest was dropped.
      fs.writeFileSync(path.join(dir, '.env'), 'MAIL_DOMAIN=ok.example\nSECRET="hunter"2"\n');
      const inside = await cli(['list', 'ls'], { DATABASE_URL: db.url }, undefined, dir);
      expect([inside.code, inside.stderr]).toEqual([1, expect.stringContaining('.env line 2: a quoted value with more after its closing quote')]);
      expect(inside.stderr).not.toContain('hunter');
      // What stays fine: a comment after the quote, a value over several lines.
      fs.writeFileSync(path.join(dir, '.env'), 'NOTE="first\nsecond" # two lines\nMAIL_DOMAIN="fine.example"  # the domain\n');
      const fine = await cli(['list', 'create', 'finequote'], { DATABASE_URL: db.url, MAIL_DOMAIN: undefined }, undefined, dir);
      expect(fine.stdout).toBe('created list finequote@fine.example\n');
      expect(await db.pool.query(`select 1 from lists where local_part = 'openquote'`)).toMatchObject({ rowCount: 0 });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
      await db.pool.query(`delete from lists where local_part in ('openquote', 'finequote')`);
    }
  });

  it('stops on a .env `export` followed by more than one space or a tab, which Node reads as another name', async () => {
    const fs = await import('node:fs');
    const path = await import('node:path');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lk-dotenv-'));
    try {
      // Node's parser took "export  MAIL_DOMAIN" as the name " MAIL_DOMAIN" (a tab: "export\tMAIL_DOMAIN"):
      // MAIL_DOMAIN went unset and the list was made on lists.localhost, with exit 0 (DATABASE_URL
      // so written ran the command on the embedded database instead).
      for (const spacing of ['  ', '\t']) {
        fs.writeFileSync(path.join(dir, '.env'), `# the domain\nexport${spacing}MAIL_DOMAIN=spaced.example\n`);
        const r = await cli(['list', 'create', 'spacedexport'], { DATABASE_URL: db.url, MAIL_DOMAIN: undefined }, undefined, dir);
        expect([r.code, r.stdout, r.stderr], JSON.stringify(spacing)).toEqual([1, '', `listkeeper: Invalid configuration: ${path.join(dir, '.env')} line 2: expected NAME=VALUE (a name of letters, digits and _), a # comment or a blank line\n`]);
      }
      expect(await db.pool.query(`select 1 from lists where local_part = 'spacedexport'`)).toMatchObject({ rowCount: 0 });
      // One space, as shells write it, is read.
      fs.writeFileSync(path.join(dir, '.env'), 'export MAIL_DOMAIN=spaced.example\n');
      const ok = await cli(['list', 'create', 'spacedexport'], { DATABASE_URL: db.url, MAIL_DOMAIN: undefined }, undefined, dir);
      expect(ok.stdout).toBe('created list spacedexport@spaced.example\n');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
      await db.pool.query(`delete from lists where local_part = 'spacedexport'`);
    }
  });

  it('defaults PUBLIC_URL to http://WEB_HOST:WEB_PORT, so that setting only WEB_PORT moves every link in mail', async () => {
    expect(parseConfig({}).publicUrl).toBe('http://127.0.0.1:8080');
    expect(parseConfig({ WEB_PORT: '9090' }).publicUrl).toBe('http://127.0.0.1:9090');
    expect(parseConfig({ WEB_HOST: 'lists.example.org', WEB_PORT: '80' }).publicUrl).toBe('http://lists.example.org:80');
    expect(parseConfig({ WEB_HOST: '0.0.0.0', WEB_PORT: '9090' }).publicUrl).toBe('http://127.0.0.1:9090');
    expect(parseConfig({ WEB_HOST: '::1', WEB_PORT: '9090' }).publicUrl).toBe('http://[::1]:9090');
    expect(parseConfig({ WEB_PORT: '9090', PUBLIC_URL: 'https://lists.example.org/' }).publicUrl).toBe('https://lists.example.org');
    // A confirmation mail queued with that configuration links to the moved port.
    const list = await findList(db.pool, 'dev');
    expect(await requestSubscription(db.pool, list, 'porty@example.com', { via: 'web', mode: 'each', settings: parseConfig({ WEB_PORT: '9090', MAIL_DOMAIN: 'lists.example.org' }) })).toBe('pending');
    const { rows } = await db.pool.query(`select convert_from(m.raw, 'UTF8') as raw from outbox o join outbound_mail m on m.id = o.mail_id where o.recipient = 'porty@example.com'`);
    expect(rows).toHaveLength(1);
    const text = rows[0].raw as string;
    expect(text).toMatch(/http:\/\/127\.0\.0\.1:9090\/\S+/);
    expect(text).not.toContain(':8080');
    await db.pool.query(`delete from outbox where recipient = 'porty@example.com'`);
    await db.pool.query(`delete from subscription_requests where email = 'porty@example.com'`);
  });

  it('stops on invalid configuration with one line naming the variable', async () => {
    const r = await cli(['list', 'ls'], { ...env, SMTP_PORT: 'seventy' });
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/SMTP_PORT/);
    const url = await cli(['list', 'ls'], { ...env, PUBLIC_URL: 'ftp://nope' });
    expect(url.stderr).toMatch(/PUBLIC_URL/);
  });

  it('stops on a listener host that is neither an IP address nor a host name with one line naming the variable', async () => {
    for (const value of ['localhost', '0.0.0.0', '::', '::1', '10.0.0.5', 'lists.example.org']) {
      expect(parseConfig({ WEB_HOST: value, SMTP_HOST: value, METRICS_HOST: value }).web.host).toBe(value);
    }
    for (const [name, role] of [['WEB_HOST', '--web'], ['SMTP_HOST', '--smtp'], ['METRICS_HOST', '--web']] as const) {
      for (const value of ['not a host', '[::1]', 'http://127.0.0.1']) {
        const r = await cli(['serve', role], { ...env, [name]: value, WEB_PORT: '0', SMTP_PORT: '0', METRICS_PORT: '0' });
        expect(r.code).not.toBe(0);
        expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(new RegExp(`^listkeeper: Invalid configuration: ${name}=`))]);
        expect(r.stdout).not.toContain('listkeeper is running');
      }
    }
  });

  it('stops on a DNS_SERVERS entry that is not an IP address or IP:port with one line naming it, before serve starts anything', async () => {
    for (const value of ['127.0.0.1:5353', '[::1]:53', '::1', '127.0.0.1, 192.0.2.1:53']) {
      expect(parseConfig({ DNS_SERVERS: value }).dnsServers.length).toBeGreaterThan(0);
    }
    for (const value of ['1.2.3.4:xx', 'dns.example.net:53', '300.1.1.1']) {
      const r = await cli(['serve', '--worker'], { ...env, DNS_SERVERS: value });
      expect(r.code).not.toBe(0);
      expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^listkeeper: Invalid configuration: DNS_SERVERS=/)]);
      expect(r.stdout).not.toContain('listkeeper is running');
    }
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
    // One names the files it applied, the other found nothing pending; so does a third run.
    const outputs = [a.stdout, b.stdout].sort();
    expect(outputs[0]).toMatch(/^applied 0001_foundation\.sql, 0002_\w+\.sql, /);
    expect(outputs[1]).toBe('nothing to apply: the database is up to date\n');
    expect((await cli(['migrate'], raceEnv)).stdout).toBe('nothing to apply: the database is up to date\n');
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

  /**
   * `serve` started, and sent SIGTERM once `at` says it has got where the test wants it (30 s at
   * most): whether it got there, its exit code ('still running' when it had not exited 10 s after
   * the signal) and what it printed.
   */
  async function serveStoppedAt(at: (output: string, pid: number) => Promise<boolean>) {
    const serve = spawn(process.execPath, [BIN, 'serve'], {
      cwd: ROOT,
      env: { ...process.env, ...env, SMTP_PORT: '0', WEB_PORT: '0', LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    serve.stdout.on('data', (d) => (output += d));
    serve.stderr.on('data', (d) => (output += d));
    const exited = new Promise<number | null>((resolve) => serve.once('exit', resolve));
    let reached = false;
    for (let i = 0; i < 300 && !(reached = await at(output, serve.pid!)); i++) await new Promise((r) => setTimeout(r, 100));
    serve.kill('SIGTERM');
    const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('still running'), 10_000))]);
    if (code === 'still running') serve.kill('SIGKILL');
    return { reached, code, output };
  }

  it('serve waiting for another process\'s migration stops at SIGTERM, starting nothing', async () => {
    // Another process migrates (it may build an index for an hour): it holds the lock.
    const other = new pg.Client({ connectionString: db.url, application_name: 'migrator under test' });
    await other.connect();
    await other.query('select pg_advisory_lock($1)', [MIGRATION_LOCK]);
    const { rows: [{ pid }] } = await other.query<{ pid: number }>('select pg_backend_pid() as pid');
    try {
      const { reached, code, output } = await serveStoppedAt(async (out) => out.includes('another process is migrating'));
      expect(reached).toBe(true);
      // Who holds it, so that a hung holder is found without guessing.
      expect(output).toMatch(new RegExp(`another process is migrating the database: waiting for it to finish \\(pid ${pid} \\(migrator under test\\)(?: from [0-9a-f.:]+)?, idle for \\d+ s\\)`));
      expect(code).toBe(0);
      expect(output).toContain('stopped before the roles started');
      expect(output).not.toContain('listkeeper is running');
    } finally {
      await other.end();
    }
  });

  it('serve building an index concurrently that waits for an older transaction (a backup) stops at SIGTERM, and the next start builds it', async () => {
    // 0059's index not built yet, as on a database of the release before it.
    const backup = await indexWaitingForABackup(db);
    try {
      const waiting = async (_: string, pid: number) => (await db.pool.query(
        `select 1 from pg_stat_activity where application_name like $1 and wait_event = 'virtualxid' and query like '%create index concurrently%'`, [`listkeeper:${pid}:%`])).rowCount === 1;
      const { reached, code, output } = await serveStoppedAt(waiting);
      expect(reached).toBe(true);
      expect(code).toBe(0);
      expect(output).toContain('stopped before the roles started');
      expect(output).not.toContain('listkeeper is running');
    } finally {
      await backup.query('commit');
      await backup.end();
    }
    const r = await cli(['migrate'], env);
    expect([r.code, r.stderr, r.stdout]).toEqual([0, '', 'applied 0059_messages_by_thread.sql\n']);
    const { rows } = await db.pool.query<{ valid: boolean }>(`select indisvalid as valid from pg_index where indexrelid = 'messages_by_thread'::regclass`);
    expect(rows).toEqual([{ valid: true }]);
  });
});
