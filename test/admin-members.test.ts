import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createList, type ListRow } from '../src/db/lists.ts';
import { addMember, findMember } from '../src/db/members.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';
import { message, sendRaw, startIngest } from './helpers/smtp.ts';
import { cli } from './helpers/cli.ts';
import { loggedIn, queuedMail, type WebClient } from './helpers/browser.ts';

let db: TestDatabase;
let web: RunningWeb;
let owner: WebClient;
let dev: ListRow;
const M = '/admin/lists/dev@lists.example.org/members';

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db);
  dev = await createList(db.pool, { address: 'dev@lists.example.org', name: 'Dev', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: ['owner@example.org'] });
  owner = await loggedIn(db, web.url, 'owner@example.org');
});
afterAll(async () => {
  await web?.stop();
  await db?.drop();
});

describe('adding members', () => {
  it('adds one member directly, with a name and a delivery mode', async () => {
    const form = new FormData();
    form.set('email', 'Single@Example.org');
    form.set('name', 'Single Person');
    form.set('mode', 'digest');
    const r = await owner.postMultipart(`${M}/add`, form);
    expect(r.status).toBe(200);
    expect(r.text).toMatch(/<strong>1<\/strong> added/);
    expect(await findMember(db.pool, dev.id, 'single@example.org')).toMatchObject({ name: 'Single Person', mode: 'digest', status: 'active' });
  });

  it('adds pasted addresses and reports the lines it could not use', async () => {
    const r = await owner.post(`${M}/add`, { addresses: 'p1@example.org\nPat Two <p2@example.org>\n\nnonsense\np1@example.org\nsingle@example.org', mode: 'each' });
    expect(r.status).toBe(200);
    expect(r.text).toMatch(/<strong>2<\/strong> added/);
    expect(r.text).toMatch(/already members; delivery changed|already members, unchanged/);
    expect(r.text).toContain('nonsense');
    expect(await findMember(db.pool, dev.id, 'p2@example.org')).toMatchObject({ name: 'Pat Two', mode: 'each' });
  });

  it('reads names in pasted lines and CSV rows as subscribe does: encoded words decoded, one line', async () => {
    const r = await owner.post(`${M}/add`, { addresses: '=?utf-8?q?Jos=C3=A9_Pe=C3=B1a?= <jose@example.org>\n"=?iso-8859-1?q?Ren=E9e?=" <renee@example.org>\nnul@example.org,=?utf-8?q?Nul=0AName?=,each', mode: 'each' });
    expect(r.status).toBe(200);
    expect(r.text).toMatch(/<strong>3<\/strong> added/);
    expect(await findMember(db.pool, dev.id, 'jose@example.org')).toMatchObject({ name: 'José Peña' });
    expect(await findMember(db.pool, dev.id, 'renee@example.org')).toMatchObject({ name: 'Renée' });
    expect(await findMember(db.pool, dev.id, 'nul@example.org')).toMatchObject({ name: 'Nul Name' });
  });

  it('adds members from an uploaded CSV file with a header row, quoted cells and per-row modes', async () => {
    const form = new FormData();
    form.set('csv', new Blob([fs.readFileSync(path.join(import.meta.dirname, 'fixtures/admin/members.csv'))], { type: 'text/csv' }), 'members.csv');
    form.set('mode', 'each');
    const r = await owner.postMultipart(`${M}/add`, form);
    expect(r.status).toBe(200);
    expect(r.text).toMatch(/<strong>4<\/strong> added/);
    expect(r.text).toMatch(/2 lines skipped/);
    expect(r.text).toContain('unknown delivery mode &quot;weekly&quot;');
    expect(await findMember(db.pool, dev.id, 'bob@example.org')).toMatchObject({ name: 'Smith, Bob', mode: 'digest' });
    expect(await findMember(db.pool, dev.id, 'carol@example.org')).toMatchObject({ mode: 'nomail' });
    const audit = await db.pool.query(`select actor, detail from audit_log where action = 'member.add' order by id desc limit 1`);
    expect(audit.rows[0]).toMatchObject({ actor: 'owner@example.org', detail: { count: 4 } });
  });

  it('asks for confirmation by mail instead when told to, adding nobody yet', async () => {
    const r = await owner.post(`${M}/add`, { addresses: 'invitee@example.org', invite: '1', mode: 'each' });
    expect(r.status).toBe(200);
    expect(r.text).toMatch(/asked to confirm by mail/);
    expect(await findMember(db.pool, dev.id, 'invitee@example.org')).toBeNull();
    const mail = await queuedMail(db, 'invitee@example.org');
    expect(mail).toHaveLength(1);
    expect(mail[0].text).toMatch(/confirm/i);
  });
});

describe('finding and changing members', () => {
  it('searches by address or name, filters by mode and status, and pages', async () => {
    for (let i = 0; i < 60; i++) await addMember(db.pool, dev.id, `bulk${String(i).padStart(2, '0')}@example.com`, i % 2 ? 'digest' : 'each');
    const search = await owner.get(`${M}?q=archer`);
    expect(search.text).toContain('value="ann@example.org"');
    expect(search.text).not.toContain('value="bob@example.org"');
    const digest = await owner.get(`${M}?mode=digest&q=example.com`);
    expect(digest.text).toMatch(/30 matches/);
    const page1 = await owner.get(`${M}?q=bulk`);
    expect(page1.text).toMatch(/60 matches · page 1 of 2/);
    expect(page1.text).toContain('bulk00@example.com');
    expect(page1.text).not.toContain('bulk55@example.com');
    expect(page1.text).toContain('page=2');
    const page2 = await owner.get(`${M}?q=bulk&page=2`);
    expect(page2.text).toContain('bulk55@example.com');
    // LIKE wildcards in the search box are taken literally.
    expect((await owner.get(`${M}?q=%25`)).text).toMatch(/0 matches/);
  });

  it('changes the delivery mode of ticked members and removes them, keeping the filter', async () => {
    const back = `${M}?q=bulk0`;
    const r = await owner.post(`${M}/bulk`, { emails: ['bulk01@example.com', 'bulk02@example.com'], action: 'mode-nomail', back });
    expect(r.status).toBe(303);
    expect(r.location).toBe(back);
    expect((await findMember(db.pool, dev.id, 'bulk01@example.com'))!.mode).toBe('nomail');
    expect((await findMember(db.pool, dev.id, 'bulk02@example.com'))!.mode).toBe('nomail');
    // Removing asks first: the page names who goes, and nothing changes until its button is pressed.
    const ask = await owner.post(`${M}/bulk`, { emails: ['bulk03@example.com'], action: 'remove', back: 'https://evil.example/' });
    expect(ask.status).toBe(200);
    expect(ask.text).toContain('Remove bulk03@example.com?');
    expect(ask.text).toContain(`<input type="hidden" name="back" value="${M}">`);
    expect((await findMember(db.pool, dev.id, 'bulk03@example.com'))!.status).toBe('active');
    expect((await owner.post(`${M}/bulk`, { emails: ['bulk03@example.com'], action: 'remove', confirm: '1' }, { csrf: false })).status).toBe(403);
    expect((await findMember(db.pool, dev.id, 'bulk03@example.com'))!.status).toBe('active');
    const done = await owner.post(`${M}/bulk`, { emails: ['bulk03@example.com'], action: 'remove', back: 'https://evil.example/', confirm: '1' });
    expect(done.location).toBe(M);
    expect((await findMember(db.pool, dev.id, 'bulk03@example.com'))!.status).toBe('unsubscribed');
    const audit = await db.pool.query(`select action, detail from audit_log where action in ('member.mode', 'member.remove') order by id`);
    expect(audit.rows.map((x) => x.action)).toEqual(['member.mode', 'member.remove']);
    expect(audit.rows[0].detail).toMatchObject({ mode: 'nomail', count: 2 });
  });

  it('removes a member stored by an earlier release with a domain that is no valid A-label, which the conversion leaves as it is', async () => {
    await db.pool.query(`insert into members (list_id, email, mode) values ($1, 'odd@xn--zz.example', 'each')`, [dev.id]);
    const done = await owner.post(`${M}/bulk`, { emails: ['odd@xn--zz.example'], action: 'remove', confirm: '1' });
    expect(done.status).toBe(303);
    expect((await findMember(db.pool, dev.id, 'odd@xn--zz.example'))!.status).toBe('unsubscribed');
  });

  it('re-enables a member disabled by bounces and shows their bounce details', async () => {
    await addMember(db.pool, dev.id, 'bouncy@example.net', 'each');
    const member = (await findMember(db.pool, dev.id, 'bouncy@example.net'))!;
    await db.pool.query(`update members set status = 'disabled', bounce_score = 3.5, disabled_reason = 'too many bounces',
                                bounce_warnings_sent = 2, bounce_warned_at = now() where id = $1`, [member.id]);
    await db.pool.query(
      `insert into bounces (list_id, member_id, source, recipient, kind, category, status, diagnostic, counted, score_after)
       values ($1, $2, 'dsn', 'bouncy@example.net', 'hard', 'mailbox_unknown', '5.1.1', '550 5.1.1 <bouncy@example.net>: user unknown', true, 3.5),
              ($1, $2, 'dsn', 'bouncy@example.net', 'policy', 'spam', '5.7.1', '554 5.7.1 message rejected as spam', false, 2.5)`,
      [dev.id, member.id],
    );
    const disabled = await owner.get(`${M}?status=disabled`);
    expect(disabled.text).toContain('bouncy@example.net');
    const detail = await owner.get(`${M}/bouncy@example.net`);
    expect(detail.status).toBe(200);
    expect(detail.text).toContain('user unknown');
    expect(detail.text).toContain('mailbox_unknown');
    expect(detail.text).toContain("not the member&#39;s fault");
    expect(detail.text).toContain('too many bounces');
    expect(detail.text).toMatch(/class="warning-state">2 of 3 sent/);
    await owner.post(`${M}/bulk`, { emails: 'bouncy@example.net', action: 'reenable' });
    expect(await findMember(db.pool, dev.id, 'bouncy@example.net')).toMatchObject({ status: 'active', bounce_score: 0 });
    // An outstanding probe shows too.
    await db.pool.query(`update members set bounce_probe_token = 'probe-' || md5('x'), bounce_probe_sent_at = now() where id = $1`, [member.id]);
    expect((await owner.get(`${M}/bouncy@example.net`)).text).toMatch(/class="probe-state">sent [^<]*if it bounces, delivery is disabled; if not, it expires after 6 days/);
    expect((await owner.get(`${M}/nobody@example.net`)).status).toBe(404);
  });

  it('exports the (filtered) members as CSV, defusing spreadsheet formulas', async () => {
    const r = await owner.get(`${M}.csv`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/text\/csv/);
    expect(r.headers.get('content-disposition')).toMatch(/attachment; filename="?dev-members.csv"?/);
    const lines = r.text.trim().split('\r\n');
    expect(lines[0]).toBe('email,name,mode,status,bounce_score,subscribed_at');
    expect(lines.find((l) => l.startsWith('bob@example.org'))).toMatch(/^bob@example.org,"Smith, Bob",digest,active,0,/);
    expect(r.text).not.toMatch(/(^|,)=cmd/m);
    const filtered = await owner.get(`${M}.csv?mode=nomail`);
    const emails = filtered.text.trim().split('\r\n').slice(1).map((l) => l.split(',')[0]);
    expect(emails).toEqual(['bulk01@example.com', 'bulk02@example.com', 'carol@example.org']);
  });
});

describe('pending subscriptions', () => {
  it('counts and lists an address that asked by mail and has not confirmed, as members --json does', async () => {
    const ops = await createList(db.pool, { address: 'ops@lists.example.org', name: 'Ops', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: ['owner@example.org'] });
    await addMember(db.pool, ops.id, 'member@example.org', 'each');
    await addMember(db.pool, ops.id, 'former@example.org', 'each');
    await db.pool.query(`update members set status = 'unsubscribed' where list_id = $1 and email = 'former@example.org'`, [ops.id]);
    const smtp = await startIngest(db.pool);
    try {
      for (const from of ['asker@example.org', 'former@example.org']) {
        const res = await sendRaw(smtp.port, { from, to: ['ops-subscribe@lists.example.org'] }, message({ from, to: 'ops-subscribe@lists.example.org', subject: 'subscribe' }));
        expect(res.ok, res.response).toBe(true);
      }
    } finally {
      await smtp.stop();
    }
    const O = '/admin/lists/ops@lists.example.org/members';
    const page = await owner.get(O);
    expect(page.status).toBe(200);
    expect(page.text).toContain('1 active · 0 disabled by bounces · 2 pending · 0 unsubscribed');
    expect(page.text).toMatch(/<td data-label="Address">asker@example\.org<\/td>[\s\S]*?<span class="badge">pending<\/span>/);
    // A pending request has no member page and no bulk box yet.
    expect(page.text).not.toContain('value="asker@example.org"');
    expect(page.text).toContain('value="member@example.org"');
    const pending = await owner.get(`${O}?status=pending`);
    expect(pending.text).toMatch(/2 matches/);
    expect(pending.text).toContain('former@example.org');
    expect(pending.text).not.toContain('member@example.org<');
    const json = JSON.parse((await cli(['members', 'ops@lists.example.org', '--json'], { DATABASE_URL: db.url })).stdout) as { email: string; status: string }[];
    expect(json.filter((m) => m.status === 'pending').map((m) => m.email)).toEqual(['asker@example.org', 'former@example.org']);
    const csv = await owner.get(`${O}.csv?status=pending`);
    expect(csv.text.trim().split('\r\n').slice(1).map((l) => l.split(',')[0])).toEqual(['asker@example.org', 'former@example.org']);
  });
});
