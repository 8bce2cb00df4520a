import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setResolvers } from '../src/dns.ts';
import { createList, type ListRow } from '../src/db/lists.ts';
import { addMember } from '../src/db/members.ts';
import { upsertAccount } from '../src/db/accounts.ts';
import { OWN_MAIL_PER_DAY, STRANGER_MAIL_PER_DAY } from '../src/core/stranger-mail.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { message, sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';
import { afterResponseDone, afterResponseSettled, loggedIn, queuedMail, WebClient } from './helpers/browser.ts';
import { LOOPBACK_SPF, stubResolvers } from './helpers/stub-dns.ts';
import { startCaptureRelay, startWorker, workerConfig, type CaptureRelay } from './helpers/capture-relay.ts';
import type { DeliveryWorker } from '../src/delivery/worker.ts';

/**
 * A stranger who wants the site to mail a victim uses every path at once: mail commands in the
 * victim's name to several lists, from many envelope senders; the subscribe form and the login and
 * reset forms from many client addresses. Each path's own limit holds; together they must still
 * reach the victim only STRANGER_MAIL_PER_DAY times a day. What would be mailed is read from the
 * outbound queue.
 */
let db: TestDatabase;
let smtp: RunningIngest;
let web: RunningWeb;
const lists: ListRow[] = [];
const VICTIM = 'victim@x.example';

beforeAll(async () => {
  setResolvers(stubResolvers(new Map(), { defaultSpf: LOOPBACK_SPF }));
  db = await testDatabase();
  smtp = await startIngest(db.pool);
  web = await startWeb(db);
  for (let i = 0; i < 3; i++) {
    lists.push(await createList(db.pool, { address: `l${i}@lists.example.org`, name: `l${i}`, description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: [] }));
  }
  // A member with an account, so that login and reset links are mailed to the victim at all.
  await addMember(db.pool, lists[0].id, VICTIM, 'each');
  await upsertAccount(db.pool, VICTIM, {});
});

afterAll(async () => {
  await web?.stop();
  await smtp?.stop();
  await db?.drop();
  setResolvers();
});

describe('mail a stranger can make the site send to one address', () => {
  it(`is at most ${STRANGER_MAIL_PER_DAY} a day, all paths together, and what is not sent by mail is kept with the reason`, async () => {
    // 10 help requests to each list (each list's own limit), in the victim's name, each from another envelope sender.
    for (const [n, list] of lists.entries()) {
      for (let i = 0; i < 10; i++) {
        const from = `bot${n * 10 + i}@attacker.example`;
        const res = await sendRaw(smtp.port, { from, to: [`${list.name}-request@lists.example.org`] }, message({ from: VICTIM, to: `${list.name}-request@lists.example.org`, subject: 'help' }));
        expect(res.ok, res.response).toBe(true);
      }
    }
    // The web forms, each request from another client address.
    const before = await afterResponseDone(web.url);
    let ip = 1;
    const client = () => new WebClient(web.url, { 'x-forwarded-for': `203.0.113.${ip++}` });
    for (const list of lists) expect((await client().post(`/lists/${list.name}/subscribe`, { email: VICTIM })).status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await client().post('/login/link', { email: VICTIM })).status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await client().post('/login/reset', { email: VICTIM })).status).toBe(200);
    await afterResponseSettled(web.url, before, 6);

    // Before the shared budget: 30 help texts and 3 confirmation requests. The 6 links are not in
    // it (a spent budget must not lock the victim out of their account): their own limit is 3 an
    // hour each, and a fourth of either sends nothing.
    const mailed = await queuedMail(db, VICTIM);
    expect(mailed).toHaveLength(STRANGER_MAIL_PER_DAY + 6);
    const before4 = await afterResponseDone(web.url);
    expect((await client().post('/login/link', { email: VICTIM })).status).toBe(200);
    expect((await client().post('/login/reset', { email: VICTIM })).status).toBe(200);
    // Over their limit nothing is scheduled after the answer: a moment for anything that would be.
    await afterResponseSettled(web.url, before4, 0);
    await new Promise((r) => setTimeout(r, 300));
    expect(await queuedMail(db, VICTIM)).toHaveLength(STRANGER_MAIL_PER_DAY + 6);
    const { rows } = await db.pool.query<{ n: number }>(
      `select count(*)::int as n from ingest_errors where reason = $1`,
      [`more than ${STRANGER_MAIL_PER_DAY} mails a day to ${VICTIM} asked for by mail or on the web: not answered`]);
    expect(rows[0].n).toBe(30 - STRANGER_MAIL_PER_DAY);
  });

  it('still answers the mailbox\'s own authenticated mail once strangers have spent its budget, from a budget they cannot spend', async () => {
    // The test above spent the victim's budget, and its 10 commands a day on each list, with mail
    // forged in its name. The victim's own mail has its envelope in its own domain, whose SPF lets
    // this client send (LOOPBACK_SPF): SPF passes aligned with From, so it is provably the victim's.
    const before = (await queuedMail(db, VICTIM)).length;
    for (const [to, subject] of [['l0-request@lists.example.org', 'help'], ['l1-subscribe@lists.example.org', 'subscribe'], ['l2-request@lists.example.org', 'unsubscribe']]) {
      const res = await sendRaw(smtp.port, { from: VICTIM, to: [to] }, message({ from: VICTIM, to, subject }));
      expect(res.ok, res.response).toBe(true);
    }
    const mailed = (await queuedMail(db, VICTIM)).slice(before);
    expect(mailed.map((m) => m.subject.replace(/[0-9a-f]{32}/, 'TOKEN'))).toEqual(['Re: help', 'confirm TOKEN', 'confirm TOKEN']);
    // A forger gets nothing out of it: mail in the victim's name, from another envelope, is still a stranger's.
    const l3 = await createList(db.pool, { address: 'l3@lists.example.org', name: 'l3', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: [] });
    const forged = await sendRaw(smtp.port, { from: 'bot-after@attacker.example', to: ['l3-request@lists.example.org'] }, message({ from: VICTIM, to: 'l3-request@lists.example.org', subject: 'help' }));
    expect(forged.ok, forged.response).toBe(true);
    expect(await queuedMail(db, VICTIM)).toHaveLength(before + 3);
    const kept = await db.pool.query<{ reason: string }>(`select reason from ingest_errors where list_id = $1 and envelope_from = 'bot-after@attacker.example'`, [l3.id]);
    expect(kept.rows.map((r) => r.reason)).toEqual([`more than ${STRANGER_MAIL_PER_DAY} mails a day to ${VICTIM} asked for by mail or on the web: not answered`]);
  });

  it(`bounds the mailbox's own authenticated requests too, to ${OWN_MAIL_PER_DAY} a day, and keeps what is over with the reason`, async () => {
    const own = 'own@x.example';
    for (const list of lists) {
      for (let i = 0; i < 10; i++) {
        const to = `${list.name}-request@lists.example.org`;
        const res = await sendRaw(smtp.port, { from: own, to: [to] }, message({ from: own, to, subject: 'help' }));
        expect(res.ok, res.response).toBe(true);
      }
    }
    expect(await queuedMail(db, own)).toHaveLength(OWN_MAIL_PER_DAY);
    const { rows } = await db.pool.query<{ n: number }>(`select count(*)::int as n from ingest_errors where reason = $1`,
      [`more than ${OWN_MAIL_PER_DAY} mails a day to ${own} asked for by its own authenticated mail: not answered`]);
    expect(rows[0].n).toBe(30 - OWN_MAIL_PER_DAY);
  });

  it('holds when the requests come at once to two ingest listeners: the count is PostgreSQL\'s, not a process\'s', async () => {
    const other = await startIngest(db.pool);
    try {
      const victim = 'victim3@x.example';
      const sends = lists.flatMap((list) => Array.from({ length: 10 }, (_, i) => {
        const to = `${list.name}-request@lists.example.org`;
        return sendRaw(i % 2 ? smtp.port : other.port, { from: `b${list.name}-${i}@attacker.example`, to: [to] }, message({ from: victim, to, subject: 'help' }));
      }));
      for (const res of await Promise.all(sends)) expect(res.ok, res.response).toBe(true);
      expect(await queuedMail(db, victim)).toHaveLength(STRANGER_MAIL_PER_DAY);
    } finally {
      await other.stop();
    }
  });

  it('answers the From only: a Reply-To or Sender naming someone else gets nothing', async () => {
    const from = 'writer@z.example';
    for (const to of ['l0-request@lists.example.org', 'l0-subscribe@lists.example.org']) {
      const res = await sendRaw(smtp.port, { from, to: [to] }, message({ from, to, subject: to.includes('request') ? 'help' : 'subscribe', headers: { 'Reply-To': 'replyto-victim@z.example', Sender: 'sender-victim@z.example' } }));
      expect(res.ok, res.response).toBe(true);
    }
    expect(await queuedMail(db, from)).toHaveLength(2);
    expect(await queuedMail(db, 'replyto-victim@z.example')).toHaveLength(0);
    expect(await queuedMail(db, 'sender-victim@z.example')).toHaveLength(0);
  });

  it('counts the mailbox, not its spellings', async () => {
    // The budget is spent: a +tag of the victim's address, whose own limits are untouched, gets nothing either.
    const c = new WebClient(web.url, { 'x-forwarded-for': '198.51.100.1' });
    const page = await c.post('/lists/l2/subscribe', { email: 'victim+tag@x.example' });
    expect(page.status).toBe(200);
    expect(await queuedMail(db, 'victim+tag@x.example')).toHaveLength(0);
    // The page says what the person can still do, and says it whether or not a mail went out: that
    // the budget is spent is not told (a held post's notice spends it for a non-member only).
    const sent = await c.post('/lists/l2/subscribe', { email: 'fresh@x.example' });
    expect(await queuedMail(db, 'fresh@x.example')).toHaveLength(1);
    for (const p of [page, sent]) {
      expect(p.text).toContain('>log in</a>, if this address belongs to an account here');
      expect(p.text).toContain('write "subscribe" from this address to <code>l2-request@lists.example.org</code>');
    }
    const same = (text: string, email: string) => text.replaceAll(email, 'EMAIL').replace(/value="[^"]*"/g, '');
    expect(same(page.text, 'victim+tag@x.example')).toBe(same(sent.text, 'fresh@x.example'));
  });

  it('spends the same budget on the link that verifies an address someone adds to their account', async () => {
    const attacker = await loggedIn(db, web.url, 'attacker@y.example');
    expect((await attacker.post('/account/addresses', { email: 'victim+work@x.example' })).status).toBe(303);
    expect(await queuedMail(db, 'victim+work@x.example')).toHaveLength(0);
    // Another address is not affected.
    expect((await attacker.post('/account/addresses', { email: 'someone-else@x.example' })).status).toBe(303);
    expect(await queuedMail(db, 'someone-else@x.example')).toHaveLength(1);
  });

  it('spends the same budget on the "awaits moderation" reply, unless the post is provably the address\'s own', async () => {
    await db.pool.query('update lists set notify_held_sender = true where id = $1', [lists[2].id]);
    const before = (await queuedMail(db, VICTIM)).length;
    const res = await sendRaw(smtp.port, { from: 'poster@attacker.example', to: ['l2@lists.example.org'] }, message({ from: VICTIM, to: 'l2@lists.example.org', subject: 'a post from a non-member' }));
    expect(res.ok, res.response).toBe(true);
    expect((await db.pool.query(`select count(*)::int as n from held_messages where state = 'held'`)).rows[0].n).toBe(1);
    expect(await queuedMail(db, VICTIM)).toHaveLength(before);
    // The victim's own post (its envelope in its domain: SPF aligned) is told, from its own budget.
    const own = await sendRaw(smtp.port, { from: VICTIM, to: ['l2@lists.example.org'] }, message({ from: VICTIM, to: 'l2@lists.example.org', subject: 'my own post' }));
    expect(own.ok, own.response).toBe(true);
    const mailed = (await queuedMail(db, VICTIM)).slice(before);
    expect(mailed.map((m) => m.subject)).toEqual(['Your message to l2@lists.example.org awaits moderator approval']);
  });

  it('takes 10 subscription requests a day from one client network on the web, an IPv6 one by its /64', async () => {
    const from = (host: number, net = '2001:db8:5:6') => new WebClient(web.url, { 'x-forwarded-for': `${net}::${host.toString(16)}` });
    for (let i = 1; i <= 10; i++) expect((await from(i).post('/lists/l1/subscribe', { email: `net${i}@y.example` })).status).toBe(200);
    const refused = await from(11).post('/lists/l1/subscribe', { email: 'net11@y.example' });
    expect(refused.status).toBe(429);
    expect(refused.text).toContain('Too many subscription requests from your network today');
    expect(await queuedMail(db, 'net11@y.example')).toHaveLength(0);
    // Another network is not held back.
    expect((await from(1, '2001:db8:5:7').post('/lists/l1/subscribe', { email: 'net12@y.example' })).status).toBe(200);
    expect(await queuedMail(db, 'net12@y.example')).toHaveLength(1);
  });

  it('answers no mail a program sent, at the command addresses: each marker alone is enough, and the mail is kept', async () => {
    const cases: [string, { envelope?: string; headers?: Record<string, string>; subject?: string }][] = [
      ['auto-generated', { headers: { 'Auto-Submitted': 'auto-generated' } }],
      ['auto-replied', { headers: { 'Auto-Submitted': 'auto-replied' } }],
      ['bulk', { headers: { Precedence: 'bulk' } }],
      ['junk', { headers: { Precedence: 'junk' } }],
      ['list', { headers: { Precedence: 'list' } }],
      ['list-id', { headers: { 'List-Id': '<other.lists.example.net>' } }],
      ['x-autoreply', { headers: { 'X-Autoreply': 'yes' } }],
      ['null-sender', { envelope: '' }],
      ['mailer-daemon', { envelope: 'MAILER-DAEMON@mx.x.example' }],
      ['vacation', { subject: 'Automatic reply: subscribe' }],
    ];
    for (const [name, c] of cases) {
      const from = `robot-${name}@z.example`;
      for (const to of ['l0-request@lists.example.org', 'l0-subscribe@lists.example.org']) {
        const res = await sendRaw(smtp.port, { from: c.envelope ?? from, to: [to] }, message({ id: `${name}.${to}`, from, to, subject: c.subject ?? 'subscribe', headers: c.headers }));
        expect(res.ok, `${name}: ${res.response}`).toBe(true);
      }
      expect(await queuedMail(db, from), name).toHaveLength(0);
      const kept = await db.pool.query(`select 1 from ingest_errors where message_id like $1`, [`%${name}.l0-%`]);
      expect(kept.rowCount, name).toBe(2);
    }
    // A person's mail marked Auto-Submitted: no is answered.
    const person = 'person@z.example';
    expect((await sendRaw(smtp.port, { from: person, to: ['l0-request@lists.example.org'] }, message({ from: person, to: 'l0-request@lists.example.org', subject: 'help', headers: { 'Auto-Submitted': 'no' } }))).ok).toBe(true);
    expect(await queuedMail(db, person)).toHaveLength(1);
  });
});

describe('on the wire', () => {
  let relay: CaptureRelay;
  let worker: DeliveryWorker;
  beforeAll(async () => {
    relay = await startCaptureRelay();
    worker = await startWorker(db, workerConfig(relay));
  });
  afterAll(async () => {
    await worker?.stop();
    await relay?.stop();
  });

  it('a command\'s answer to 1 MB is a short text of its own, and leaves with our bounce address as MAIL FROM and Auto-Submitted: auto-replied, so that an auto-responder answers us, not a person', async () => {
    const from = 'wire@x.example';
    const res = await sendRaw(smtp.port, { from: 'someone-else@attacker.example', to: ['l1-request@lists.example.org'] }, message({ from, to: 'l1-request@lists.example.org', subject: `help ${'x'.repeat(5000)}`, body: `help\n${'payload '.repeat(130_000)}` }));
    expect(res.ok, res.response).toBe(true);
    const answer = await relay.copy(from, 'This is the command address');
    expect(answer.from).toBe('l1-bounces+notice@lists.example.org');
    const raw = answer.raw.toString();
    expect(raw).toMatch(/^Auto-Submitted: auto-replied\r?$/m);
    expect(raw).not.toContain('payload');
    expect(answer.raw.length).toBeLessThan(8_000);
  });
});
