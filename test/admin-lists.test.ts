import crypto from 'node:crypto';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LIST_SETTINGS } from '../src/core/list-settings.ts';
import { createList, findList, type ListRow } from '../src/db/lists.ts';
import { addMember } from '../src/db/members.ts';
import { archiveMessage } from '../src/db/messages.ts';
import { parse } from '../src/mail/parse.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';
import { message } from './helpers/smtp.ts';
import { loggedIn, type WebClient } from './helpers/browser.ts';
import { OVERSIZED_RSA_KEY } from './helpers/keys.ts';

let db: TestDatabase;
let web: RunningWeb;
let admin: WebClient;
let owner: WebClient;
let dev: ListRow;
const S = '/admin/lists/dev@lists.example.org/settings';

const settingsForm = (over: Record<string, string> = {}) => ({
  name: 'Developers', description: 'Talk about the code', post_policy: 'members', subscribe_policy: 'confirm', archive: 'public',
  subject_prefix: '', footer: '', reply_to: 'none', reply_to_address: '', dmarc_mitigation: 'none', max_message_kb: '0',
  dkim_domain: '', dkim_selector: '', dkim_private_key: '', digest_size_kb: '30', digest_interval_hours: '24', bounce_threshold: '3', bounce_warnings: '3', bounce_warning_interval_days: '7', held_notice_minutes: '15',
  auth_policy: 'hold',
  ...over,
});

async function archive(listId: number, id: string) {
  const raw = Buffer.from(message({ id, subject: `about ${id}` }));
  await archiveMessage(db.pool, listId, raw, await parse(raw));
}

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db);
  dev = await createList(db.pool, { address: 'dev@lists.example.org', name: 'Dev', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: ['owner@example.org'] });
  admin = await loggedIn(db, web.url, 'admin@example.org', { siteAdmin: true });
  owner = await loggedIn(db, web.url, 'owner@example.org');
});
afterAll(async () => {
  await web?.stop();
  await db?.drop();
});

describe('list settings', () => {
  it('shows every setting of the list in one form', async () => {
    const page = await owner.get(S);
    for (const name of ['name', 'description', 'post_policy', 'subscribe_policy', 'archive', 'subject_prefix', 'footer', 'reply_to', 'reply_to_address', 'dmarc_mitigation', 'max_message_kb', 'dkim_domain', 'dkim_selector', 'dkim_private_key', 'digest_size_kb', 'digest_interval_hours', 'bounce_threshold', 'bounce_warnings', 'bounce_warning_interval_days', 'held_notice_minutes', 'spam_hold_score', 'spam_reject_score', 'auth_policy']) {
      expect(page.text, name).toContain(`name="${name}"`);
    }
  });

  it('saves policies, prefix, footer, Reply-To, DMARC mitigation and size limit, and records what changed', async () => {
    const r = await owner.post(S, settingsForm({
      post_policy: 'moderated', subscribe_policy: 'approve', archive: 'private', subject_prefix: '[dev]', footer: 'Unsubscribe: see the headers',
      reply_to: 'address', reply_to_address: 'Replies@Example.org', dmarc_mitigation: 'munge_from', max_message_kb: '512',
    }));
    expect(r.status).toBe(303);
    const list = await findList(db.pool, 'dev');
    expect(list).toMatchObject({
      name: 'Developers', description: 'Talk about the code', post_policy: 'moderated', subscribe_policy: 'approve', archive: 'private',
      subject_prefix: '[dev]', footer: 'Unsubscribe: see the headers', reply_to: 'address', reply_to_address: 'replies@example.org',
      dmarc_mitigation: 'munge_from', max_message_size: 512 * 1024,
    });
    const { rows } = await db.pool.query(`select actor, action, detail from audit_log where action = 'list.settings'`);
    expect(rows).toHaveLength(1);
    expect(rows[0].actor).toBe('owner@example.org');
    expect(rows[0].detail).toMatchObject({ post_policy: 'moderated', subject_prefix: '[dev]', max_message_size: 524288 });
    expect((await owner.get(S)).text).toContain('Saved:');
  });

  it('saves a template of 5,000 characters sent with CRLF line ends whole, and refuses a longer one rather than cutting it', async () => {
    // 300 lines: within the textarea's 5,000 characters as LF, 300 more as the browser sends them.
    const lines = Array.from({ length: 300 }, (_, i) => `Line ${String(i).padStart(3, '0')} of the footer.`);
    const footer = `${lines.join('\n')}\n{archive_url}`.slice(-4900);
    expect(footer.length).toBeLessThanOrEqual(5000);
    expect((await owner.post(S, settingsForm({ footer: footer.replace(/\n/g, '\r\n') }))).status).toBe(303);
    expect((await findList(db.pool, 'dev')).footer).toBe(footer);
    const tooLong = await owner.post(S, settingsForm({ footer: `${footer}\n${'x'.repeat(200)}` }));
    expect(tooLong.status).toBe(400);
    expect(tooLong.text).toContain('at most 5000 characters');
    expect((await findList(db.pool, 'dev')).footer).toBe(footer);
  });

  it('saves what happens to posts that fail authentication, hold by default', async () => {
    expect((await findList(db.pool, 'dev')).auth_policy).toBe('hold');
    expect((await owner.get(S)).text).toMatch(/<option value="hold" selected>/);
    expect((await owner.post(S, settingsForm({ post_policy: 'moderated', subscribe_policy: 'approve', archive: 'private', auth_policy: 'reject' }))).status).toBe(303);
    expect((await findList(db.pool, 'dev')).auth_policy).toBe('reject');
    const bad = await owner.post(S, settingsForm({ auth_policy: 'maybe' }));
    expect(bad.status).toBe(400);
    expect(bad.text).toContain('Posts that fail authentication: choose one of accept, hold, reject.');
    await owner.post(S, settingsForm({ post_policy: 'moderated', subscribe_policy: 'approve', archive: 'private', auth_policy: 'hold' }));
  });

  it('refuses bad values all at once and keeps the list as it was', async () => {
    const r = await owner.post(S, settingsForm({ post_policy: 'sometimes', reply_to: 'address', reply_to_address: 'nope', max_message_kb: '-1', bounce_threshold: 'lots' }));
    expect(r.status).toBe(400);
    expect(r.text).toContain('Nothing was saved');
    expect(r.text).toContain('Who may post');
    expect(r.text).toContain('Reply-To address');
    expect(r.text).toContain('Maximum message size');
    expect(r.text).toContain('Bounce threshold');
    expect((await findList(db.pool, 'dev')).post_policy).toBe('moderated');
  });

  it('saves how often and how long a disabled member is reminded, within bounds', async () => {
    expect((await findList(db.pool, 'dev'))).toMatchObject({ bounce_warnings: 3, bounce_warning_interval_days: 7 });
    const bad = await owner.post(S, settingsForm({ bounce_warnings: '-1', bounce_warning_interval_days: '0' }));
    expect(bad.status).toBe(400);
    expect(bad.text).toContain('Reminders to a disabled member');
    expect(bad.text).toContain('Days between reminders');
    expect((await owner.post(S, settingsForm({ bounce_warnings: '0', bounce_warning_interval_days: '2' }))).status).toBe(303);
    expect((await findList(db.pool, 'dev'))).toMatchObject({ bounce_warnings: 0, bounce_warning_interval_days: 2 });
    const page = await owner.get(S);
    expect(page.text).toMatch(/name="bounce_warning_interval_days" value="2"/);
    await owner.post(S, settingsForm());
  });

  it('saves the spam thresholds, empty turning one off, and keeps them when the form leaves them out', async () => {
    expect(await findList(db.pool, 'dev')).toMatchObject({ spam_hold_score: 6, spam_reject_score: 15 });
    expect((await owner.get(S)).text).toMatch(/name="spam_hold_score" value="6"/);
    expect((await owner.post(S, settingsForm({ spam_hold_score: '8.5', spam_reject_score: '' }))).status).toBe(303);
    expect(await findList(db.pool, 'dev')).toMatchObject({ spam_hold_score: 8.5, spam_reject_score: null });
    expect((await owner.get(S)).text).toMatch(/name="spam_reject_score" value=""/);
    // A form without the fields (an older page, a script) does not turn the check off.
    await owner.post(S, settingsForm());
    expect(await findList(db.pool, 'dev')).toMatchObject({ spam_hold_score: 8.5, spam_reject_score: null });
    const bad = await owner.post(S, settingsForm({ spam_hold_score: 'lots' }));
    expect(bad.status).toBe(400);
    expect(bad.text).toContain('Hold at spam score');
    await owner.post(S, settingsForm({ spam_hold_score: '6', spam_reject_score: '15' }));
    expect(await findList(db.pool, 'dev')).toMatchObject({ spam_hold_score: 6, spam_reject_score: 15 });
  });

  it('refuses control characters in the name, description and subject prefix, as list set does', async () => {
    const before = await findList(db.pool, 'dev');
    // ESC sequences in the description were stored, and printed raw by `listkeeper list ls` to a
    // site administrator's terminal (OSC 52 writes their clipboard, others rewrite the screen).
    const r = await owner.post(S, settingsForm({ name: 'Dev\r\nBcc: x@example.net', description: 'Talk \x1b]52;c;ZWNobyBoaQ==\x07 here', subject_prefix: '[dev]\tx' }));
    expect(r.status).toBe(400);
    for (const label of ['Name', 'Description', 'Subject prefix']) expect(r.text).toContain(`${label}: must be one line, without control characters.`);
    const after = await findList(db.pool, 'dev');
    expect([after.name, after.description, after.subject_prefix]).toEqual([before.name, before.description, before.subject_prefix]);
    // Too long is refused, not cut short.
    const long = await owner.post(S, settingsForm({ description: 'd'.repeat(1001) }));
    expect(long.status).toBe(400);
    expect(long.text).toContain('Description: must be at most 1000 characters.');
  });

  it('turns control characters stored by the panel before it checked them into spaces (sql/0090)', async () => {
    const list = await createList(db.pool, { address: 'escaped@lists.example.org', name: 'Esc\x1b[2Japed', description: 'one\r\ntwo', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: ['owner@example.org'] });
    await db.pool.query("update lists set subject_prefix = E'[esc]\\x07' where id = $1", [list.id]);
    await db.pool.query(fs.readFileSync(new URL('../sql/0090_list_lines_without_controls.sql', import.meta.url), 'utf8'));
    expect(await findList(db.pool, 'escaped')).toMatchObject({ name: 'Esc [2Japed', description: 'one  two', subject_prefix: '[esc] ' });
  });

  it('stores a DKIM key without ever showing it again', async () => {
    // A key that only looks like one is refused, as `list set` refuses it.
    const fake = '-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEAsecret\n-----END PRIVATE KEY-----';
    const refused = await owner.post(S, settingsForm({ dkim_domain: 'lists.example.org', dkim_selector: 'lk1', dkim_private_key: fake }));
    expect(refused.text).toContain('DKIM private key: paste a PEM private key that parses');
    expect((await findList(db.pool, 'dev')).dkim_private_key).toBeNull();
    // An owner's key over 4,096 bits would make the site's delivery workers sign each copy slowly.
    const huge = OVERSIZED_RSA_KEY;
    const tooBig = await owner.post(S, settingsForm({ dkim_domain: 'lists.example.org', dkim_selector: 'lk1', dkim_private_key: huge }));
    expect(tooBig.status).toBe(400);
    expect(tooBig.text).toContain('DKIM private key: paste an RSA key of 1024 to 4096 bits (2048 advised) or an Ed25519 key (got rsa 4104).');
    expect((await findList(db.pool, 'dev')).dkim_private_key).toBeNull();
    const key = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString().trim();
    await owner.post(S, settingsForm({ dkim_domain: 'lists.example.org', dkim_selector: 'lk1', dkim_private_key: key }));
    expect((await findList(db.pool, 'dev')).dkim_private_key).toBe(key);
    const page = await owner.get(S);
    expect(page.text).not.toContain(key.split('\n')[1].slice(0, 20));
    expect(page.text).toContain('A key is stored');
    // Saving again without a key keeps the stored one; the checkbox removes it.
    await owner.post(S, settingsForm({ dkim_domain: 'lists.example.org', dkim_selector: 'lk1' }));
    expect((await findList(db.pool, 'dev')).dkim_private_key).toBe(key);
    await owner.post(S, settingsForm({ dkim_clear_key: '1' }));
    expect((await findList(db.pool, 'dev')).dkim_private_key).toBeNull();
  });

  it('checks the Reply-To address, DKIM domain and DKIM selector as `list set` does, and keeps the stored ones when it refuses', async () => {
    await owner.post(S, settingsForm({ dkim_domain: 'lists.example.org', dkim_selector: 'lk1' }));
    const longLabel = `${'a'.repeat(64)}.example.org`;
    for (const [fields, text] of [
      [{ dkim_domain: 'a..example.org' }, 'DKIM domain: must be a domain name.'],
      [{ dkim_domain: '-x.example.org' }, 'DKIM domain: must be a domain name.'],
      [{ dkim_domain: longLabel }, 'DKIM domain: must be a domain name.'],
      [{ dkim_selector: 's'.repeat(64) }, 'DKIM selector: must be letters, digits, &quot;.&quot;, &quot;_&quot; and &quot;-&quot;.'],
      [{ reply_to: 'address', reply_to_address: 'not an address' }, 'Reply-To address: must be an e-mail address.'],
    ] as [Record<string, string>, string][]) {
      const r = await owner.post(S, settingsForm({ dkim_domain: 'lists.example.org', dkim_selector: 'lk1', ...fields }));
      expect(r.status, JSON.stringify(fields)).toBe(400);
      expect(r.text).toContain(text);
      expect(await findList(db.pool, 'dev')).toMatchObject({ dkim_domain: 'lists.example.org', dkim_selector: 'lk1', reply_to_address: null });
    }
    // What `list set` takes, the form takes: upper case is lowered, a 63-octet label is a label.
    const ok = await owner.post(S, settingsForm({ dkim_domain: `${'b'.repeat(63)}.Example.ORG`, dkim_selector: 'sel_2026-12.a', reply_to: 'address', reply_to_address: 'Replies@Example.org' }));
    expect(ok.status).toBe(303);
    expect(await findList(db.pool, 'dev')).toMatchObject({ dkim_domain: `${'b'.repeat(63)}.example.org`, dkim_selector: 'sel_2026-12.a', reply_to: 'address' });
    expect(() => LIST_SETTINGS.dkim_domain.parse(longLabel)).toThrow('a domain name');
    expect(() => LIST_SETTINGS.dkim_domain.parse(`${'c.'.repeat(127)}org`)).toThrow('a domain name');
    await owner.post(S, settingsForm({ dkim_domain: '', dkim_selector: '', reply_to: 'none', reply_to_address: '' }));
  });
});

describe('owners and moderators', () => {
  it('adds and removes moderators and owners, with the audit log saying who did it', async () => {
    expect((await owner.post('/admin/lists/dev@lists.example.org/roles', { action: 'add', role: 'moderator', email: 'Mod@Example.org' })).status).toBe(303);
    expect((await owner.post('/admin/lists/dev@lists.example.org/roles', { action: 'add', role: 'owner', email: 'second@example.org' })).status).toBe(303);
    const { rows } = await db.pool.query('select email, role from list_roles where list_id = $1 order by email', [dev.id]);
    expect(rows).toEqual([{ email: 'mod@example.org', role: 'moderator' }, { email: 'owner@example.org', role: 'owner' }, { email: 'second@example.org', role: 'owner' }]);
    // The new moderator can open the held queue right away.
    const mod = await loggedIn(db, web.url, 'mod@example.org');
    expect((await mod.get('/admin/lists/dev@lists.example.org/held')).status).toBe(200);
    await owner.post('/admin/lists/dev@lists.example.org/roles', { action: 'remove', role: 'moderator', email: 'mod@example.org' });
    expect((await mod.get('/admin/lists/dev@lists.example.org/held')).status).toBe(403);
    const audit = await db.pool.query(`select actor, action, target from audit_log where action like 'role.%' order by id`);
    expect(audit.rows).toEqual([
      { actor: 'owner@example.org', action: 'role.add', target: 'mod@example.org' },
      { actor: 'owner@example.org', action: 'role.add', target: 'second@example.org' },
      { actor: 'owner@example.org', action: 'role.remove', target: 'mod@example.org' },
    ]);
  });

  it('keeps at least one owner when an owner removes owners', async () => {
    await owner.post('/admin/lists/dev@lists.example.org/roles', { action: 'remove', role: 'owner', email: 'second@example.org' });
    const r = await owner.post('/admin/lists/dev@lists.example.org/roles', { action: 'remove', role: 'owner', email: 'owner@example.org' });
    expect(r.status).toBe(303);
    expect((await owner.get(S)).text).toContain('keeps at least one owner');
    expect((await db.pool.query(`select email from list_roles where list_id = $1 and role = 'owner'`, [dev.id])).rows).toEqual([{ email: 'owner@example.org' }]);
  });
});

describe('creating and deleting lists', () => {
  it('creates a list from the form, on MAIL_DOMAIN when no domain is given', async () => {
    const r = await admin.post('/admin/lists/new', { address: 'announce', name: 'Announcements', description: 'News', post_policy: 'moderated', subscribe_policy: 'open', archive: 'public', owners: 'boss@example.org, helper@example.org' });
    expect(r.status).toBe(303);
    expect(r.location).toBe('/admin/lists/announce@lists.example.org/settings');
    const list = await findList(db.pool, 'announce');
    expect(list).toMatchObject({ name: 'Announcements', post_policy: 'moderated', subscribe_policy: 'open' });
    expect((await db.pool.query('select email from list_roles where list_id = $1 order by email', [list.id])).rows.map((x) => x.email)).toEqual(['boss@example.org', 'helper@example.org']);
    const dup = await admin.post('/admin/lists/new', { address: 'announce', post_policy: 'open', subscribe_policy: 'open', archive: 'public' });
    expect(dup.status).toBe(400);
    expect(dup.text).toContain('already exists');
    const bad = await admin.post('/admin/lists/new', { address: 'news-owner', post_policy: 'open', subscribe_policy: 'open', archive: 'public' });
    expect(bad.status).toBe(400);
    expect(bad.text).toContain('-owner');
  });

  it('states the consequences before deleting, asks for the address, then deletes the list and its own archive', async () => {
    const doomed = await createList(db.pool, { address: 'doomed@lists.example.org', name: 'Doomed', description: '', postPolicy: 'open', subscribePolicy: 'open', archive: 'public', owners: ['x@example.org'] });
    await addMember(db.pool, doomed.id, 'a@example.org', 'each');
    await addMember(db.pool, doomed.id, 'b@example.org', 'each');
    await archive(doomed.id, 'only-here@example.org');
    await archive(doomed.id, 'cross@example.org');
    await archive(dev.id, 'cross@example.org');
    const page = await admin.get('/admin/lists/doomed@lists.example.org/delete');
    expect(page.status).toBe(200);
    expect(page.text).toMatch(/<strong>2<\/strong> members/);
    expect(page.text).toMatch(/<strong>1<\/strong> of its 2 messages/);
    expect(page.text).toContain('cannot be undone');
    const wrong = await admin.post('/admin/lists/doomed@lists.example.org/delete', { confirm: 'doomed' });
    expect(wrong.status).toBe(400);
    expect((await db.pool.query(`select 1 from lists where id = $1`, [doomed.id])).rows).toHaveLength(1);
    const ok = await admin.post('/admin/lists/doomed@lists.example.org/delete', { confirm: 'doomed@lists.example.org' });
    expect(ok.status).toBe(303);
    expect((await db.pool.query(`select 1 from lists where id = $1`, [doomed.id])).rows).toHaveLength(0);
    const msgs = await db.pool.query(`select message_id from messages where message_id in ('only-here@example.org', 'cross@example.org')`);
    expect(msgs.rows).toEqual([{ message_id: 'cross@example.org' }]);
    const audit = await db.pool.query(`select actor, action, list_id, list_address from audit_log where action = 'list.delete'`);
    expect(audit.rows).toEqual([{ actor: 'admin@example.org', action: 'list.delete', list_id: null, list_address: 'doomed@lists.example.org' }]);
  });
});

describe('the panel home and the dashboard', () => {
  it("shows a site admin every list and an owner only theirs", async () => {
    const all = await admin.get('/admin/');
    expect(all.text).toContain('dev@lists.example.org');
    expect(all.text).toContain('announce@lists.example.org');
    const mine = await owner.get('/admin/');
    expect(mine.text).toContain('dev@lists.example.org');
    expect(mine.text).not.toContain('announce@lists.example.org');
  });

  it('draws deliveries and bounces per hour as inline SVG, with queue depth, recent errors and audit entries', async () => {
    await db.pool.query(`insert into delivery_hourly (hour, sent, deferred, failed, bounced) values (date_trunc('hour', now()), 40, 3, 1, 2), (date_trunc('hour', now()) - interval '5 hours', 10, 0, 0, 0)`);
    await db.pool.query(`insert into ingest_errors (reason, raw) values ('message could not be parsed: test', '\\x00')`);
    const r = await admin.get('/admin/dashboard');
    expect(r.status).toBe(200);
    expect(r.text).toContain('<svg');
    expect(r.text).toMatch(/sent 40, deferred 3, failed 1, bounced 2/);
    expect(r.text).toContain('max 46/h');
    expect(r.text).toContain('message could not be parsed: test');
    expect(r.text).toMatch(/<div class="big">0<\/div><div>not sent \(no longer wanted\)/);
    expect(r.text).toContain('list.delete');
    expect(r.text).not.toContain('<script');
  });
});
