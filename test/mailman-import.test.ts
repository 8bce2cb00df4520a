import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { cli, ROOT } from './helpers/cli.ts';

let db: TestDatabase;
let env: Record<string, string>;
const F = path.join(ROOT, 'test/fixtures/mailman');
const MM3 = ['config.json', 'members.json', 'owners.json', 'moderators.json', 'bans.json'].map((f) => path.join(F, 'mm3', f));
const MM2 = ['bees.config', 'bees-regular.txt', 'bees-digest.txt', 'bees-nomail.txt'].map((f) => path.join(F, 'mm2', f));

beforeAll(async () => {
  db = await testDatabase();
  env = { DATABASE_URL: db.url, MAIL_DOMAIN: 'lists.example.org' };
});
afterAll(async () => { await db?.drop(); });

const show = async (list: string) => JSON.parse((await cli(['list', 'show', list, '--json'], env)).stdout);
const members = async (list: string) => JSON.parse((await cli(['members', list, '--json'], env)).stdout);
/** Runs fn in a new temporary folder, removed after it whatever happens. */
async function inTempDir(prefix: string, fn: (dir: string) => Promise<void>) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  try {
    await fn(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
const rules = async (list: string) => JSON.parse((await cli(['rules', list, '--json'], env)).stdout).map((r: { pattern: string; kind: string }) => `${r.kind} ${r.pattern}`).sort();
const digestFormats = async (list: string) => Object.fromEntries((await db.pool.query(
  `select m.email, m.digest_format from members m join lists l on l.id = m.list_id where l.address = $1`, [list])).rows.map((r) => [r.email, r.digest_format]));

describe('listkeeper import-mailman', { timeout: 90_000 }, () => {
  it('creates a list from a Mailman 3 REST export: settings, members with their modes, owners, moderators, bans', async () => {
    const r = await cli(['import-mailman', ...MM3], env);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^created list ant@example\.com \(from Mailman 3\)/);
    expect(await show('ant@example.com')).toMatchObject({
      name: 'Ant', description: 'Talk about ants', post_policy: 'members', subscribe_policy: 'confirm', archive: 'members',
      subject_prefix: '[Ant]', reply_to: 'list', reply_to_address: null, max_message_size: 40 * 1024, dmarc_mitigation: 'munge_from',
      roster_visibility: 'members', notify_held_sender: true, send_welcome: true, bounce_threshold: 5, bounce_warnings: 3, bounce_warning_interval_days: 7,
      digest_size_threshold: 30 * 1024, owners: ['queen@example.com'],
    });
    expect(await members('ant@example.com')).toEqual([
      { email: 'anne@example.com', name: 'Anne Person', mode: 'each', status: 'active', bounce_score: 0 },
      { email: 'bart@example.com', name: 'Bart Person', mode: 'digest', status: 'active', bounce_score: 0 },
      { email: 'cris@example.org', name: null, mode: 'digest', status: 'active', bounce_score: 0 },
      { email: 'dave@example.org', name: 'Dave', mode: 'nomail', status: 'active', bounce_score: 0 },
    ]);
    expect(await digestFormats('ant@example.com')).toMatchObject({ 'bart@example.com': 'plain', 'cris@example.org': 'mime' });
    expect(JSON.parse((await cli(['moderators', 'ant@example.com', '--json'], env)).stdout)).toEqual([{ email: 'worker@example.com' }]);
    expect(await rules('ant@example.com')).toEqual(['allow partner@example.net', 'ban @junk.example', 'ban @spam.example', 'ban troll@example.net']);
  });

  it('reports each Mailman setting without an equivalent on a line of its own', async () => {
    const r = await cli(['import-mailman', ...MM3], env);
    const lines = r.stdout.split('\n');
    expect(lines).toContain('  info = A list for people who study ants.: no equivalent');
    // Mailman's welcome switch is listkeeper's send_welcome (see the settings above), not a line here.
    expect(r.stdout).not.toMatch(/send_welcome_message/);
    expect(lines).toContain('  bans = ^bot[0-9]+@example\\.com$: a regular expression: rules here are an address or a whole @domain');
    expect(lines).toContain('  moderation_action (dave@example.org) = hold: no per-member moderation: use post_policy or a sender rule');
    // Identities and derived addresses are not settings: not reported.
    expect(r.stdout).not.toMatch(/posting_address|http_etag|list_name/);
    const json = JSON.parse((await cli(['import-mailman', '--json', ...MM3], env)).stdout);
    expect(json.unmapped).toContainEqual({ setting: 'max_num_recipients', value: '10', note: 'no equivalent' });
    expect(json.unmapped.length).toBe(lines.filter((l) => /^ {2}\S.*: /.test(l) && !/^ {2}(members|set|owners|moderators|banned|always)/.test(l)).length);
  });

  it('changes nothing when run again, and says so', async () => {
    const before = (await db.pool.query(`select count(*)::int as n from audit_log`)).rows[0].n;
    const r = await cli(['import-mailman', '--json', ...MM3], env);
    expect(r.code).toBe(0);
    const json = JSON.parse(r.stdout);
    expect(json).toMatchObject({ list: 'ant@example.com', created: false, changed: false, settings: {}, owners_added: [], moderators_added: [], rules_added: [], members: { added: 0, reactivated: 0, updated: 0, unchanged: 4, left_unsubscribed: 0 } });
    expect((await cli(['import-mailman', ...MM3], env)).stdout).toMatch(/^ant@example\.com: nothing changed \(already imported\)/);
    expect((await db.pool.query(`select count(*)::int as n from audit_log`)).rows[0].n).toBe(before);
  });

  it('puts back a setting changed since, and only that; keeps a member\'s mode changed here since, and says so', async () => {
    expect((await cli(['list', 'set', 'ant@example.com', 'subject_prefix=[changed]'], env)).code).toBe(0);
    expect((await cli(['subscribe', 'ant@example.com', 'anne@example.com', '--mode', 'nomail'], env)).code).toBe(0);
    const json = JSON.parse((await cli(['import-mailman', '--json', ...MM3], env)).stdout);
    expect(json).toMatchObject({ changed: true, settings: { subject_prefix: '[Ant]' }, members: { updated: 0, unchanged: 4 } });
    expect(json.kept).toEqual([{ email: 'anne@example.com', mode: { here: 'nomail', until: null, export: 'each' } }]);
    expect((await db.pool.query(`select detail->'settings' as s from audit_log where action = 'list.import' order by id desc limit 1`)).rows[0].s).toEqual({ subject_prefix: '[Ant]' });
    expect((await members('ant@example.com')).find((m: { email: string }) => m.email === 'anne@example.com').mode).toBe('nomail');
  });

  it('carries over on a re-run (the final sync) what changed in Mailman since the first import, and keeps what members changed here, member by member', async () => {
    await inTempDir('lk-mm3-sync-', async (dir) => {
      const config = JSON.parse(fs.readFileSync(path.join(F, 'mm3/config.json'), 'utf8'));
      const roster = JSON.parse(fs.readFileSync(path.join(F, 'mm3/members.json'), 'utf8'));
      const file = path.join(dir, 'list.json');
      const write = (entries: unknown[]) => fs.writeFileSync(file, JSON.stringify({ config: { ...config, list_name: 'sync', fqdn_listname: 'sync@example.com' }, members: { ...roster, entries, total_size: entries.length } }));
      write(roster.entries);
      expect((await cli(['import-mailman', file], env)).code).toBe(0);
      const row = async (email: string) => (await db.pool.query(
        `select m.mode, m.digest_format, to_char(m.nomail_until, 'YYYY-MM-DD') as until from members m join lists l on l.id = m.list_id where l.address = 'sync@example.com' and m.email = $1`, [email])).rows[0];

      // Here, after the first import: anne chooses digests, cris plain ones, dave pauses until a day.
      expect((await cli(['subscribe', 'sync@example.com', 'anne@example.com', '--mode', 'digest'], env)).code).toBe(0);
      await db.pool.query(`update members set digest_format = 'plain' where email = 'cris@example.org' and list_id = (select id from lists where address = 'sync@example.com')`);
      const until = new Date(Date.now() + 10 * 86_400_000).toISOString().slice(0, 10);
      expect((await cli(['subscribe', 'sync@example.com', 'dave@example.org', '--mode', 'nomail', '--until', until], env)).code).toBe(0);
      // In Mailman meanwhile: bart went back to every post, eve joined.
      const [anne, bart, cris, dave] = roster.entries;
      write([anne, { ...bart, delivery_mode: 'regular' }, cris, dave, { ...anne, email: 'eve@example.com', display_name: 'Eve', member_id: 'e5' }]);

      const r = JSON.parse((await cli(['import-mailman', '--json', file], env)).stdout);
      expect(r).toMatchObject({ changed: true, members: { added: 1, updated: 1, unchanged: 3 } });
      expect(r.kept).toEqual([
        { email: 'anne@example.com', mode: { here: 'digest', until: null, export: 'each' } },
        { email: 'cris@example.org', digest_format: { here: 'plain', export: 'mime' } },
        { email: 'dave@example.org', mode: { here: 'nomail', until, export: 'nomail' } },
      ]);
      expect([await row('anne@example.com'), await row('bart@example.com'), await row('cris@example.org'), await row('dave@example.org'), await row('eve@example.com')]).toEqual([
        { mode: 'digest', digest_format: 'mime', until: null }, { mode: 'each', digest_format: 'plain', until: null },
        { mode: 'digest', digest_format: 'plain', until: null }, { mode: 'nomail', digest_format: 'mime', until }, { mode: 'each', digest_format: 'mime', until: null },
      ]);
      // Run again: nothing to change, the same members kept, each on a line of its own.
      const text = await cli(['import-mailman', file], env);
      expect(text.stdout.split('\n').slice(0, 5)).toEqual([
        'sync@example.com: nothing changed (already imported)',
        '  members: 0 added, 0 reactivated, 0 updated, 5 unchanged',
        '  kept for anne@example.com, changed here since the import: mode digest (Mailman: each)',
        '  kept for cris@example.org, changed here since the import: digest format plain (Mailman: mime)',
        `  kept for dave@example.org, changed here since the import: mode nomail until ${until} (Mailman: nomail)`,
      ]);
      // A member who then makes the same choice in Mailman is simply in step again.
      write([{ ...anne, delivery_mode: 'mime_digests' }, { ...bart, delivery_mode: 'regular' }, cris, dave, { ...anne, email: 'eve@example.com', display_name: 'Eve', member_id: 'e5' }]);
      expect(JSON.parse((await cli(['import-mailman', '--json', file], env)).stdout).kept.map((k: { email: string }) => k.email)).toEqual(['cris@example.org', 'dave@example.org']);
    });
  });

  it('leaves unsubscribed a member who unsubscribed here since, however often it runs', async () => {
    expect((await cli(['unsubscribe', 'ant@example.com', 'bart@example.com'], env)).code).toBe(0);
    for (let run = 0; run < 2; run++) {
      const r = await cli(['import-mailman', '--json', ...MM3], env);
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ changed: false, members: { added: 0, reactivated: 0, updated: 0, unchanged: 3, left_unsubscribed: 1 } });
    }
    expect((await cli(['import-mailman', ...MM3], env)).stdout).toContain('members: 0 added, 0 reactivated, 0 updated, 3 unchanged, 1 left unsubscribed (they unsubscribed here)');
    expect((await db.pool.query(`select m.status from members m join lists l on l.id = m.list_id where l.address = 'ant@example.com' and m.email = 'bart@example.com'`)).rows[0].status).toBe('unsubscribed');
  });

  it('creates a list from Mailman 2 config_list output and list_members output by flag', async () => {
    const r = await cli(['import-mailman', ...MM2], env);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^created list bees@lists\.example\.com \(from Mailman 2\)/);
    expect(await show('bees@lists.example.com')).toMatchObject({
      name: 'Bees', description: "Bees and their keepers' list", post_policy: 'members', subscribe_policy: 'approve', archive: 'members',
      subject_prefix: '[Bees]', reply_to: 'address', reply_to_address: 'hive@example.com', max_message_size: 100 * 1024,
      dmarc_mitigation: 'munge_from', roster_visibility: 'anyone', notify_held_sender: true, send_welcome: true, send_goodbye: false,
      footer: '_______________________________________________\nBees mailing list\nBees@lists.example.com\n%(web_page_url)slistinfo%(cgiext)s/bees',
      owners: ['keeper@example.com', 'second.keeper@example.com'],
    });
    expect((await members('bees@lists.example.com')).map((m: { email: string; name: string | null; mode: string }) => `${m.email} ${m.mode} ${m.name ?? ''}`)).toEqual([
      'amy@example.com each Amy Apiarist', 'ben@example.com each ', 'carl@example.org nomail Carl', 'dora@example.com digest Dora',
    ]);
    expect(JSON.parse((await cli(['moderators', 'bees@lists.example.com', '--json'], env)).stdout)).toEqual([{ email: 'drone@example.com' }]);
    expect(await rules('bees@lists.example.com')).toEqual(['allow friend@example.org', 'ban @bad.example', 'ban spammer@example.net']);
    const lines = r.stdout.split('\n');
    expect(lines).toContain('  unsubscribe_policy = 0: no equivalent');
    expect(lines).toContain('  ban_list = ^[0-9]+@example\\.org$: a regular expression: rules here are an address or a whole @domain');
    // @bumblebees is Mailman's "the members of the list bumblebees", not a pattern.
    expect(lines).toContain("  accept_these_nonmembers = @bumblebees: another list's members (Mailman's @LISTNAME): rules here are an address or a whole @domain");
    expect(lines.some((l) => l.startsWith('  msg_footer = ') && l.endsWith('not filled in: edit the footer'))).toBe(true);
    expect(lines.some((l) => l.startsWith('  dmarc_moderation_action = 3: '))).toBe(true);
    expect(JSON.parse((await cli(['import-mailman', '--json', ...MM2], env)).stdout)).toMatchObject({ changed: false, members: { unchanged: 4 } });
  });

  it('keeps a Mailman 2 digest member whose delivery is off a digest reader, paused, with the digest kind the file names', async () => {
    // list_members -r -f, --digest=plain -f, --digest=mime -f and -n -f of one list: hal, pam and
    // max have delivery off; pam and max read digests, plain and MIME.
    const D = path.join(F, 'mm2-digest-nomail');
    const files = ['wasps.config', 'wasps-regular.txt', 'wasps-digest-plain.txt', 'wasps-digest-mime.txt', 'wasps-nomail.txt'].map((f) => path.join(D, f));
    const r = await cli(['import-mailman', '--json', ...files], env);
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect(JSON.parse(r.stdout).unmapped.filter((u: { setting: string }) => u.setting.startsWith('list_members'))).toEqual([]);
    const rows = (await db.pool.query(
      `select m.email, m.mode, m.mode_before_nomail, m.nomail_until, m.digest_format from members m join lists l on l.id = m.list_id
        where l.address = 'wasps@lists.example.com' order by m.email`)).rows.map((m) => `${m.email} ${m.mode} ${m.mode_before_nomail} ${m.nomail_until} ${m.digest_format}`);
    expect(rows).toEqual([
      'amy@example.com each null null mime', 'ben@example.com each null null mime', 'hal@example.org nomail null null mime',
      'max@example.org nomail digest null mime', 'pam@example.com nomail digest null plain', 'pia@example.com digest null null plain',
    ]);
    // A later pause with an end date keeps digest as the mode it ends in.
    expect((await cli(['subscribe', 'wasps@lists.example.com', 'pam@example.com', '--mode', 'nomail', '--until', new Date(Date.now() + 5 * 86_400_000).toISOString().slice(0, 10)], env)).code).toBe(0);
    expect((await db.pool.query(`select mode_before_nomail from members where email = 'pam@example.com'`)).rows[0].mode_before_nomail).toBe('digest');
    // Run again, the pause made here is kept (the export knows none), and said.
    const again = JSON.parse((await cli(['import-mailman', '--json', ...files], env)).stdout);
    expect(again.members).toMatchObject({ added: 0, updated: 0, unchanged: 6 });
    expect(again.kept.map((k: { email: string }) => k.email)).toEqual(['pam@example.com']);
    expect(JSON.parse((await cli(['import-mailman', '--json', ...files], env)).stdout)).toMatchObject({ changed: false, members: { unchanged: 6 } });
    // list_members -d alone mixes plain and MIME readers: said, not silently made MIME.
    expect(JSON.parse((await cli(['import-mailman', '--json', ...MM2], env)).stdout).unmapped).toContainEqual({
      setting: 'list_members -d', value: '1 digest member',
      note: 'plain or MIME not told apart: a new member gets MIME digests; give list_members --digest=plain and --digest=mime output (…digest-plain…, …digest-mime…) to keep each one\'s',
    });
  });

  it('keeps a Mailman 3 digest member whose delivery is off a digest reader, paused', async () => {
    await inTempDir('lk-mm3-paused-digest-', async (dir) => {
      const config = JSON.parse(fs.readFileSync(path.join(F, 'mm3/config.json'), 'utf8'));
      const roster = JSON.parse(fs.readFileSync(path.join(F, 'mm3/members.json'), 'utf8'));
      const entries = [{ ...roster.entries[1], delivery_status: 'by_user' }];
      fs.writeFileSync(path.join(dir, 'list.json'), JSON.stringify({ config: { ...config, list_name: 'paused', fqdn_listname: 'paused@example.com' }, members: { ...roster, entries, total_size: 1 } }));
      const r = await cli(['import-mailman', path.join(dir, 'list.json')], env);
      expect([r.code, r.stderr]).toEqual([0, '']);
      expect((await db.pool.query(`select m.mode, m.mode_before_nomail, m.digest_format from members m join lists l on l.id = m.list_id where l.address = 'paused@example.com'`)).rows)
        .toEqual([{ mode: 'nomail', mode_before_nomail: 'digest', digest_format: 'plain' }]);
    });
  });

  it('refuses a file that is not JSON or of no known format, before anything is written', async () => {
    const count = async () => (await db.pool.query(`select (select count(*) from lists)::int as l, (select count(*) from members)::int as m`)).rows[0];
    const before = await count();
    const notJson = await cli(['import-mailman', path.join(F, 'not-json.json'), ...MM3], env);
    expect(notJson.code).toBe(1);
    expect(notJson.stderr).toMatch(/^listkeeper: .*not-json\.json: not JSON/);
    const unknown = await cli(['import-mailman', path.join(F, 'unknown.json')], env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/unknown\.json: not a format import-mailman knows/);
    const unnamed = await cli(['import-mailman', path.join(F, 'mm2/bees.config'), path.join(F, 'mm3/../mm2/bees-regular.txt'), path.join(ROOT, 'package.json')], env);
    expect(unnamed.code).toBe(1);
    const noConfig = await cli(['import-mailman', path.join(F, 'mm2/bees-regular.txt')], env);
    expect(noConfig.stderr).toMatch(/no list configuration among the files/);
    expect(await count()).toEqual(before);
  });

  it('refuses one page of a paginated roster, naming it, and imports every page given together', async () => {
    // GET …/roster/member?count=2&page=N: each page holds 2 entries and the whole roster's total_size.
    await inTempDir('lk-mm3-pages-', async (dir) => {
      const roster = JSON.parse(fs.readFileSync(path.join(F, 'mm3/members.json'), 'utf8'));
      const config = JSON.parse(fs.readFileSync(path.join(F, 'mm3/config.json'), 'utf8'));
      fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, list_name: 'paged', fqdn_listname: 'paged@example.com' }));
      const page = (n: number) => {
        const file = path.join(dir, `members-page${n}.json`);
        fs.writeFileSync(file, JSON.stringify({ ...roster, start: (n - 1) * 2, entries: roster.entries.slice((n - 1) * 2, n * 2) }));
        return file;
      };
      const one = await cli(['import-mailman', path.join(dir, 'config.json'), page(1)], env);
      expect(one.code).toBe(1);
      expect(one.stderr).toBe(`listkeeper: the member roster is incomplete (${path.join(dir, 'members-page1.json')} holds 2 of 4: one page of a paginated response?): give every page, or fetch it without count and page\n`);
      expect((await db.pool.query(`select 1 from lists where address = 'paged@example.com'`)).rowCount).toBe(0);
      const both = await cli(['import-mailman', path.join(dir, 'config.json'), page(1), page(2)], env);
      expect([both.code, both.stderr]).toEqual([0, '']);
      expect((await members('paged@example.com')).map((m: { email: string }) => m.email)).toEqual(['anne@example.com', 'bart@example.com', 'cris@example.org', 'dave@example.org']);
    });
  });

  it('reads a bounce warning interval that is not whole days, as Mailman 3 writes it, and says it was rounded', async () => {
    await inTempDir('lk-mm3-interval-', async (dir) => {
      const config = JSON.parse(fs.readFileSync(path.join(F, 'mm3/config.json'), 'utf8'));
      // timedelta(days=3, hours=1): rest/helpers.py writes "3d3600.0s" ("7d" only for whole days).
      fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, list_name: 'intervals', fqdn_listname: 'intervals@example.com', bounce_you_are_disabled_warnings_interval: '3d3600.0s' }));
      const r = await cli(['import-mailman', '--json', path.join(dir, 'config.json')], env);
      expect([r.code, r.stderr]).toEqual([0, '']);
      const json = JSON.parse(r.stdout);
      expect(json.settings.bounce_warning_interval_days).toBe(3);
      expect(json.unmapped).toContainEqual({ setting: 'bounce_you_are_disabled_warnings_interval', value: '3d3600.0s', note: 'whole days here: 3' });
      expect(await show('intervals@example.com')).toMatchObject({ bounce_warning_interval_days: 3 });
    });
  });

  it('refuses a file past 64 MB without reading it, a device or a directory too, before anything is written', async () => {
    await inTempDir('lk-mm-big-', async (dir) => {
      const big = path.join(dir, 'huge-regular.txt');
      fs.closeSync(fs.openSync(big, 'w'));
      fs.truncateSync(big, 64 * 1024 * 1024 + 1); // sparse: no disk used
      const lists = async () => (await db.pool.query(`select count(*)::int as n from lists`)).rows[0].n;
      const before = await lists();
      const r = await cli(['import-mailman', path.join(F, 'mm2/bees.config'), big], env);
      expect([r.code, r.stdout]).toEqual([1, '']);
      expect(r.stderr).toBe(`listkeeper: ${big} holds more than 64 MB, the most listkeeper reads for a Mailman export file: give a Mailman 3 roster in pages (?count=…&page=…), Mailman 2 members in several files\n`);
      // A device has no size to go by: it was read without end (7 GB in 30 s), then up to 256 MB.
      const zero = await cli(['import-mailman', path.join(F, 'mm2/bees.config'), '/dev/zero'], env);
      expect([zero.code, zero.stderr]).toEqual([1, 'listkeeper: /dev/zero is a device, not a regular file: a Mailman export file must be a regular file\n']);
      const folder = await cli(['import-mailman', path.join(F, 'mm2/bees.config'), dir], env);
      expect([folder.code, folder.stderr]).toEqual([1, `listkeeper: ${dir} is a directory, not a regular file: a Mailman export file must be a regular file\n`]);
      expect(await lists()).toBe(before);
    });
  });

  it('stores a domain ban written with A-labels as the rules command stores it, so that it matches', async () => {
    await inTempDir('lk-mm3-idn-', async (dir) => {
      const config = JSON.parse(fs.readFileSync(path.join(F, 'mm3/config.json'), 'utf8'));
      fs.writeFileSync(path.join(dir, 'list.json'), JSON.stringify({
        config: { ...config, list_name: 'idn', fqdn_listname: 'idn@example.com', discard_these_nonmembers: [] },
        bans: ['^.*@xn--bcher-kva\\.example$'],
      }));
      const r = await cli(['import-mailman', path.join(dir, 'list.json')], env);
      expect([r.code, r.stderr]).toEqual([0, '']);
      // Addresses are stored with U-labels: "@xn--bcher-kva.example" matched no sender's domain.
      expect(await rules('idn@example.com')).toEqual(['allow partner@example.net', 'ban @bücher.example']);
      expect((await cli(['rules', 'idn@example.com', 'ban', '@xn--bcher-kva.example', '--json'], env)).stdout).toContain('"pattern": "@bücher.example"');
      expect(await rules('idn@example.com')).toEqual(['allow partner@example.net', 'ban @bücher.example']);
    });
  });

  it('refuses a roster whose "entries" is not an array, and reports an entry whose fields are objects, each in one line of its own words', async () => {
    await inTempDir('lk-mm3-shapes-', async (dir) => {
      const config = path.join(dir, 'config.json');
      fs.writeFileSync(config, JSON.stringify({ list_name: 'shapes', mail_host: 'example.com' }));
      // JavaScript's words before: "error: entries.forEach is not a function".
      const notArray = path.join(dir, 'members.json');
      fs.writeFileSync(notArray, JSON.stringify({ total_size: 1, entries: { email: 'anne@example.com' } }));
      const r = await cli(['import-mailman', config, notArray], env);
      expect([r.code, r.stdout, r.stderr]).toEqual([1, '', `listkeeper: ${notArray}: "entries" is not an array: not a Mailman 3 REST response\n`]);
      expect((await db.pool.query(`select 1 from lists where address = 'shapes@example.com'`)).rowCount).toBe(0);
      // An object where a string belongs ("error: Cannot convert object to primitive value" stopped
      // the import): that entry is reported, the others are imported.
      const odd = path.join(dir, 'odd.json');
      fs.writeFileSync(odd, JSON.stringify({ members: [{ email: { toString: 1 } }, { email: 'bea@example.com', delivery_mode: { toString: 1 } }, { email: 'cy@example.com', role: 'member' }] }));
      const o = await cli(['import-mailman', config, odd], env);
      expect(o.code).toBe(1);
      expect(o.stderr).toBe(
        `listkeeper: ${odd}: entry 1: "{\\"toString\\":1}" is not an e-mail address\n` +
          `listkeeper: ${odd}: entry 2 (bea@example.com): unknown delivery_mode "{\\"toString\\":1}" (regular, plaintext_digests, mime_digests or summary_digests)\n`,
      );
      expect((await members('shapes@example.com')).map((m: { email: string }) => m.email)).toEqual(['cy@example.com']);
    });
  });

  it('takes a setting with half of a surrogate pair, as U+FFFD the way a text column stores it, and records it in the audit log', async () => {
    await inTempDir('lk-mm3-surrogate-', async (dir) => {
      const config = path.join(dir, 'config.json');
      // As the file has it: the escape of a lone half. JSON.stringify wrote it back as "\ud800" for
      // the audit entry, which jsonb refuses: the import stopped with "invalid input syntax for type json".
      fs.writeFileSync(config, '{"list_name": "halves", "mail_host": "example.com", "subject_prefix": "[x\\ud800]", "description": "d\\udc00"}');
      const r = await cli(['import-mailman', config], env);
      expect([r.code, r.stderr]).toEqual([0, '']);
      expect(await show('halves@example.com')).toMatchObject({ subject_prefix: '[x\ufffd]', description: 'd\ufffd' });
      const { rows } = await db.pool.query(`select detail->'settings' as s from audit_log where action = 'list.import' and list_address = 'halves@example.com'`);
      expect(rows).toEqual([{ s: { subject_prefix: '[x\ufffd]', description: 'd\ufffd' } }]);
    });
  });

  it('reports a post action or a size Mailman 3 does not have as an unknown value, taking the default, instead of dropping it without a word', async () => {
    await inTempDir('lk-mm3-unknown-', async (dir) => {
      const config = path.join(dir, 'config.json');
      fs.writeFileSync(config, JSON.stringify({ list_name: 'odd-actions', mail_host: 'example.com', default_member_action: 'holdd', default_nonmember_action: { x: 1 }, max_message_size: 'big' }));
      const r = await cli(['import-mailman', '--json', config], env);
      expect([r.code, r.stderr]).toEqual([0, '']);
      const { unmapped } = JSON.parse(r.stdout);
      for (const setting of ['default_member_action', 'default_nonmember_action', 'max_message_size']) {
        expect(unmapped, setting).toContainEqual(expect.objectContaining({ setting, note: 'unknown value' }));
      }
      expect(await show('odd-actions@example.com')).toMatchObject({ post_policy: 'members' });
      // Mailman 2: a number outside the choices.
      const mm2 = path.join(dir, 'odd.config');
      fs.writeFileSync(mm2, '## "odd-numbers" mailing list configuration settings\nhost_name = \'example.com\'\nreply_goes_to_list = -1\nsubscribe_policy = 1.5\n');
      const two = await cli(['import-mailman', '--json', mm2], env);
      expect([two.code, two.stderr]).toEqual([0, '']);
      const notes = JSON.parse(two.stdout).unmapped;
      expect(notes).toContainEqual({ setting: 'reply_goes_to_list', value: '-1', note: 'unknown value' });
      expect(notes).toContainEqual({ setting: 'subscribe_policy', value: '1.5', note: 'unknown value' });
    });
  });

  it('reports a member line that is no address and imports the good ones, exiting 1', async () => {
    const r = await cli(['import-mailman', path.join(F, 'mm2/bees.config'), path.join(F, 'bad-members-regular.txt')], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/bad-members-regular\.txt:2: "this is not an address" is not an e-mail address/);
    const emails = (await members('bees@lists.example.com')).map((m: { email: string }) => m.email);
    expect(emails).toEqual(expect.arrayContaining(['eve@example.com', 'frank@example.com', 'amy@example.com']));
  });
});
