import fs from 'node:fs';
import os from 'node:os';
import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createList, findList, type ListRow } from '../src/db/lists.ts';
import { addMember, findMember } from '../src/db/members.ts';
import type { DeliveryWorker } from '../src/delivery/worker.ts';
import { parse, type ParsedMessage } from '../src/mail/parse.ts';
import { loggedIn, type WebClient } from './helpers/browser.ts';
import { drained, startCaptureRelay, startWorker, workerConfig, type CaptureRelay } from './helpers/capture-relay.ts';
import { cli } from './helpers/cli.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { message, sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';

let db: TestDatabase;
let relay: CaptureRelay;
let smtp: RunningIngest;
let web: RunningWeb;
let worker: DeliveryWorker;
let owner: WebClient;
let dev: ListRow;
let env: Record<string, string>;
const S = '/admin/lists/dev@lists.example.org/settings';

async function mail(to: string, from: string, opts: { subject?: string; body?: string; headers?: Record<string, string> } = {}) {
  const res = await sendRaw(smtp.port, { from, to: [to] }, message({ from, to, subject: opts.subject ?? '', body: opts.body ?? '', headers: opts.headers }));
  expect(res.ok, res.response).toBe(true);
}

/** The n-th mail the relay got for an address (from 0), raw and parsed. */
async function nthMailTo(address: string, n = 0): Promise<ParsedMessage & { raw: Buffer }> {
  const deadline = Date.now() + 10_000;
  while (relay.to(address).length <= n) {
    if (Date.now() > deadline) throw new Error(`no mail ${n} for ${address}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const raw = relay.to(address)[n].raw;
  return Object.assign(await parse(raw), { raw });
}

const tokenOf = (m: ParsedMessage) => /^confirm ([a-f0-9]{32})$/.exec(m.subject)![1];

function file(name: string, text: string): string {
  const p = `${os.tmpdir()}/lk-templates-${process.pid}-${name}.txt`;
  fs.writeFileSync(p, text);
  return p;
}

beforeAll(async () => {
  db = await testDatabase();
  relay = await startCaptureRelay();
  smtp = await startIngest(db.pool);
  web = await startWeb(db);
  dev = await createList(db.pool, { address: 'dev@lists.example.org', name: 'Developers', description: 'Talk about the code', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: ['owner@example.org'] });
  worker = await startWorker(db, workerConfig(relay));
  owner = await loggedIn(db, web.url, 'owner@example.org');
  env = { DATABASE_URL: db.url, MAIL_DOMAIN: 'lists.example.org', PUBLIC_URL: 'https://lists.example.org' };
});

afterAll(async () => {
  await worker?.stop();
  await web?.stop();
  await smtp?.stop();
  await relay?.stop();
  await db?.drop();
});

describe('a list\'s own texts', () => {
  it('refuses an unknown variable in list set and in the panel, naming it, and saves nothing', async () => {
    const bad = await cli(['list', 'set', 'dev', `template_welcome=@${file('bad', 'Hello {member_email}, see {archive_link} and {unsubscribe_url}\n')}`, 'template_confirm=Join us'], env);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('template_welcome: must be a text whose variables are among');
    expect(bad.stderr).toContain('{archive_link} is unknown here');
    expect(bad.stderr).toContain('template_confirm: must be a text that contains {confirm_url}');
    const footer = await cli(['list', 'set', 'dev', 'footer=Leave: {unsubscribe_url}'], env);
    expect(footer.stderr).toContain('{unsubscribe_url} is unknown here');
    expect(await findList(db.pool, 'dev')).toMatchObject({ template_welcome: '', template_confirm: '', footer: '' });

    const page = await owner.get(S);
    expect(page.status).toBe(200);
    expect(page.text).toContain('name="template_welcome"');
    expect(page.text).toContain('{member_email}, {unsubscribe_url}');
    const r = await owner.post(S, { name: 'Developers', description: 'Talk about the code', post_policy: 'open', subscribe_policy: 'confirm', archive: 'public', reply_to: 'none', dmarc_mitigation: 'none', auth_policy: 'hold',
      max_message_kb: '0', digest_size_kb: '30', digest_interval_hours: '24', bounce_threshold: '3', bounce_warnings: '3', bounce_warning_interval_days: '7', held_notice_minutes: '15',
      template_goodbye: 'Bye {member_emial}' });
    expect(r.status).toBe(400);
    expect(r.text).toContain('Goodbye: must be a text whose variables are among');
    expect(r.text).toContain('{member_emial} is unknown here');
    expect((await findList(db.pool, 'dev')).template_goodbye).toBe('');
  });

  it('welcomes a confirmed subscriber in the list\'s words, with every variable substituted', async () => {
    const ok = await cli(['list', 'set', 'dev',
      `template_welcome=@${file('welcome', 'Hi {member_email}, welcome to {list_name} ({list_description}) at {list_address}.\nArchive: {archive_url}\nLeave: {unsubscribe_url}\nCommands: {request_address}; people: {owner_address}. Braces: {{list_name}}\n')}`,
      `template_confirm=@${file('confirm', 'Please confirm {member_email} for {list_name}: {confirm_url}\n')}`,
      'template_goodbye=Farewell {member_email}, from {list_name}.'], env);
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);

    await mail('dev-subscribe@lists.example.org', 'nina@x.example');
    const c = await nthMailTo('nina@x.example', 0);
    const token = tokenOf(c);
    // The custom confirmation: its own words, and a link that works.
    expect(c.text).toContain('Please confirm nina@x.example for Developers: ');
    const link = /(https?:\/\/\S+\/confirm\/[a-f0-9]{32})/.exec(c.text)![1];
    expect(link).toContain(token);
    const page = await fetch(`${web.url}${new URL(link).pathname}`);
    const html = await page.text();
    const csrf = /name="_csrf" value="([^"]+)"/.exec(html)![1];
    const confirmed = await fetch(`${web.url}${new URL(link).pathname}`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: (page.headers.get('set-cookie') ?? '').split(';')[0] },
      body: new URLSearchParams({ _csrf: csrf }).toString(),
    });
    expect(confirmed.status).toBe(200);
    const member = await findMember(db.pool, dev.id, 'nina@x.example');
    expect(member).toMatchObject({ status: 'active' });

    const w = await nthMailTo('nina@x.example', 1);
    expect(w.subject).toBe('Welcome to dev@lists.example.org');
    expect(w.text).toContain('Hi nina@x.example, welcome to Developers (Talk about the code) at dev@lists.example.org.');
    expect(w.text).toMatch(/Archive: https?:\/\/\S+\/lists\/dev\/\n/);
    expect(w.text).toContain(`Leave: ${web.url}/u/${member!.token}`);
    expect(w.text).toContain('Commands: dev-request@lists.example.org; people: dev-owner@lists.example.org. Braces: {list_name}');
  });

  it('tells an unsubscribed member goodbye in the list\'s words', async () => {
    await mail('dev-unsubscribe@lists.example.org', 'nina@x.example');
    const c = await nthMailTo('nina@x.example', 2);
    // Leaving keeps the built-in confirmation: template_confirm is for joining.
    expect(c.text).toContain('asked to leave the mailing list dev@lists.example.org');
    await mail(`dev-confirm+${tokenOf(c)}@lists.example.org`, 'nina@x.example', { subject: `Re: confirm ${tokenOf(c)}` });
    const g = await nthMailTo('nina@x.example', 3);
    expect(g.subject).toBe('You have left dev@lists.example.org');
    expect(g.text.trim()).toBe('Farewell nina@x.example, from Developers.');
    expect(await findMember(db.pool, dev.id, 'nina@x.example')).toMatchObject({ status: 'unsubscribed' });
  });

  it('welcomes a member an owner adds in the panel when send_welcome is on, and not from the CLI once it is off', async () => {
    const added = await owner.post('/admin/lists/dev@lists.example.org/members/add', { addresses: 'Paul <paul@x.example>', mode: 'each' });
    expect(added.status).toBe(200);
    const w = await nthMailTo('paul@x.example', 0);
    const member = await findMember(db.pool, dev.id, 'paul@x.example');
    expect(w.text).toContain('Hi paul@x.example, welcome to Developers');
    expect(w.text).toContain(`Leave: ${web.url}/u/${member!.token}`);

    expect((await cli(['list', 'set', 'dev', 'send_welcome=off'], env)).code).toBe(0);
    const sub = await cli(['subscribe', 'dev', 'quiet@x.example'], env);
    expect(sub.code).toBe(0);
    expect(await findMember(db.pool, dev.id, 'quiet@x.example')).toMatchObject({ status: 'active' });
    await drained(db);
    await new Promise((r) => setTimeout(r, 300));
    expect(relay.to('quiet@x.example')).toHaveLength(0);
    const { rows } = await db.pool.query(`select count(*)::int as n from outbox where recipient = 'quiet@x.example'`);
    expect(rows[0].n).toBe(0);

    expect((await cli(['list', 'set', 'dev', 'send_welcome=on'], env)).code).toBe(0);
    expect((await cli(['subscribe', 'dev', 'loud@x.example'], env)).code).toBe(0);
    expect((await nthMailTo('loud@x.example', 0)).text).toContain('Hi loud@x.example, welcome to Developers');
  });

  it('writes a member whose domain is international in A-labels in the To of its notices, as in the envelope', async () => {
    // The member is stored in U-labels (bob@bücher.example). Written so in To, the notice had a
    // raw UTF-8 header field, which only SMTPUTF8 carries (RFC 6532 §3): a server without 8BITMIME
    // was not sent it at all (5.6.3, "8-bit header fields"), so such a subscriber never got a
    // welcome or a confirmation to answer.
    expect((await cli(['subscribe', 'dev', 'bob@xn--bcher-kva.example'], env)).code).toBe(0);
    expect(await findMember(db.pool, dev.id, 'bob@bücher.example')).toMatchObject({ status: 'active' });
    // (smtp-server, the capture relay, gives the envelope's domain in U-labels)
    const w = await nthMailTo('bob@bücher.example', 0);
    const head = w.raw.toString('latin1').split('\r\n\r\n')[0];
    expect(head).toMatch(/^To: bob@xn--bcher-kva\.example\r?$/m);
    expect(/[\x80-\xff]/.test(head)).toBe(false);
    expect(w.text).toContain('welcome to Developers');
  });

  it('writes the From of a list whose name is 200 CJK characters in lines of at most 998 octets, the name whole', async () => {
    // 200 characters is what `list set name=` takes; in encoded words they are some 1,000 octets,
    // and "From: … <LIST-request@…>" was one line of 1,027: a relay that holds to RFC 5322 §2.1.1
    // (Exim's message_linelength_limit) refuses every notice of such a list.
    const name = '開発者のためのメーリングリスト'.repeat(14).slice(0, 200);
    expect((await cli(['list', 'create', 'cjk', '--name', 'x', '--owner', 'owner@example.org'], env)).code).toBe(0);
    const set = await cli(['list', 'set', 'cjk', `name=${name}`], env);
    expect(set.code, set.stderr).toBe(0);
    expect((await cli(['subscribe', 'cjk', 'wide@x.example'], env)).code).toBe(0);
    const w = await nthMailTo('wide@x.example', 0);
    const head = w.raw.toString('latin1').split('\r\n\r\n')[0];
    expect(Math.max(...head.split('\r\n').map((l) => l.length))).toBeLessThanOrEqual(998);
    expect(w.headers.get('from')?.[0]).toContain('cjk-request@lists.example.org');
    const from = (await simpleParser(w.raw)).from?.value;
    expect(from).toEqual([{ address: 'cjk-request@lists.example.org', name: `${name} list` }]);
  });
});

describe('the footer of an HTML-only post', () => {
  it('goes inside the HTML, escaped, with line breaks, and the post stays one text/html part', async () => {
    const set = await cli(['list', 'set', 'dev', `footer=@${file('footer', '{list_name} <{list_address}>\nArchive: {archive_url} & more — thanks = done\n')}`], env);
    expect(set.stderr).toBe('');
    await addMember(db.pool, dev.id, 'reader@x.example', 'each', null);
    const raw = message({
      from: 'alice@example.org', subject: 'HTML only', id: 'html-only@example.org',
      headers: { 'Content-Type': 'text/html; charset=utf-8', 'Content-Transfer-Encoding': 'quoted-printable' },
      body: '<html><body><p>Hello =E2=80=94 list</p></body></html>\n',
    });
    const res = await sendRaw(smtp.port, { from: 'alice@example.org', to: ['dev@lists.example.org'] }, raw);
    expect(res.ok, res.response).toBe(true);
    const copy = await nthMailTo('reader@x.example', 0);
    const head = copy.raw.toString('latin1').split(/\r?\n\r?\n/)[0];
    expect(head).toMatch(/^Content-Type: text\/html; charset=utf-8$/im);
    expect(head).not.toMatch(/multipart/i);
    expect(copy.attachments).toHaveLength(0);
    const html = copy.html!;
    expect(html).toContain('<p>Hello — list</p>');
    const footerAt = html.indexOf('<div class="list-footer">');
    expect(footerAt).toBeGreaterThan(html.indexOf('Hello'));
    expect(footerAt).toBeLessThan(html.indexOf('</body>'));
    expect(html).toContain('Developers &#60;dev@lists.example.org&#62;<br>');
    expect(html).toMatch(/Archive: https:\/\/lists\.example\.org\/lists\/dev\/ &#38; more &#8212; thanks &#61; done/);
    // A text/plain post keeps the footer as a part of its own.
    await sendRaw(smtp.port, { from: 'alice@example.org', to: ['dev@lists.example.org'] }, message({ from: 'alice@example.org', id: 'plain@example.org', body: 'Plain.\n' }));
    const plain = await nthMailTo('reader@x.example', 1);
    expect(plain.raw.toString('latin1')).toMatch(/Content-Type: multipart\/mixed/);
    expect(plain.text).toContain('Developers <dev@lists.example.org>');
  });
});
