/*
 * One spelling per mailbox: `bob@xn--bcher-kva.example` (a domain in A-labels) and
 * `bob@bücher.example` (U-labels) are one address, stored in U-labels wherever it comes from
 * (the command line, a post's From, a bounce).
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addSenderRule } from '../src/core/sender-rules.ts';
import { createList, type ListRow } from '../src/db/lists.ts';
import { addMember } from '../src/db/members.ts';
import { normalizeEmail, oldSpelling, parseMailbox, postSender } from '../src/mail/address.ts';
import { cli } from './helpers/cli.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { message, sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';

const U = 'bücher.example';
const A = 'xn--bcher-kva.example';

describe('an address whose domain is in A-labels', () => {
  it('is the address in U-labels, the spelling a post\'s From has', () => {
    expect(normalizeEmail(`bob@${A}`)).toBe(`bob@${U}`);
    expect(normalizeEmail(`Bob@XN--BCHER-KVA.Example`)).toBe(`bob@${U}`);
    expect(normalizeEmail(`jörg@xn--exmple-cua.de`)).toBe('jörg@exämple.de');
    expect(normalizeEmail(`bob@${U.slice(0, 6)}.xn--tda.example`)).toBe(`bob@${U.slice(0, 6)}.ü.example`);
    expect(parseMailbox(`Bob <bob@${A}>`)).toEqual({ email: `bob@${U}`, name: 'Bob' });
    expect(postSender(`bob@${A}`, null)).toBe(`bob@${U}`);
    expect(oldSpelling(`bob@${U}`)).toBe(`bob@${A}`);
    expect(oldSpelling('bob@example.org')).toBeNull();
  });

  it('is refused when it is no A-label: not punycode, or punycode that does not read back as itself', () => {
    for (const bad of ['bob@xn--zz.example', 'bob@xn--.example', 'bob@xn--abc-.example', 'bob@xn--bcher-kva-.example', `bob@${U.slice(0, 6)}.xn--abc-.example`]) {
      expect(normalizeEmail(bad), bad).toBeNull();
    }
    // Not an A-label at all: a hyphenated ASCII label is taken as it is.
    expect(normalizeEmail('bob@ab--c.example')).toBe('bob@ab--c.example');
  });
});

let db: TestDatabase;
let smtp: RunningIngest;
let lists = 0;

async function newList(postPolicy: 'open' | 'members' = 'members'): Promise<ListRow> {
  const local = `idn-${++lists}`;
  const list = await createList(db.pool, { address: `${local}@lists.example.org`, name: local, description: '', postPolicy, subscribePolicy: 'confirm', archive: 'public', owners: [`owner-${local}@example.org`] });
  // Posts come from 127.0.0.1 without a DKIM signature: membership, not authentication, is under test.
  await db.pool.query(`update lists set auth_policy = 'accept' where id = $1`, [list.id]);
  return list;
}

async function post(list: ListRow, id: string, from: string) {
  const r = await sendRaw(smtp.port, { from: 'envelope@example.net', to: [list.address] }, message({ id, from, to: list.address, subject: `Post ${id}` }));
  expect(r.ok, r.response).toBe(true);
  const archived = (await db.pool.query('select 1 from messages where message_id = $1', [id])).rows.length > 0;
  const { rows: [held] } = await db.pool.query<{ state: string; rule: string; from_email: string }>('select state, rule, from_email from held_messages where message_id = $1', [id]);
  return { archived, held };
}

beforeAll(async () => {
  db = await testDatabase();
  smtp = await startIngest(db.pool);
});

afterAll(async () => {
  await smtp?.stop();
  await db?.drop();
});

describe('both spellings of one address', () => {
  it('are one member when an administrator subscribes both', async () => {
    const list = await newList();
    const env = { DATABASE_URL: db.url, MAIL_DOMAIN: 'lists.example.org' };
    const added = await cli(['subscribe', list.address, `bob@${U}`, `Bob <bob@${A}>`, `ann@${A}`, `bad@xn--zz.example`], env);
    expect(added.stderr).toMatch(/bad@xn--zz\.example/);
    expect(added.code).not.toBe(0);
    const members = await cli(['members', list.address, '--json'], env);
    expect(members.code, members.stderr).toBe(0);
    expect((JSON.parse(members.stdout) as { email: string }[]).map((m) => m.email).sort()).toEqual([`ann@${U}`, `bob@${U}`]);
  });

  it('a post From the A-label spelling is the member\'s, on a members-only list', async () => {
    const list = await newList('members');
    await addMember(db.pool, list.id, normalizeEmail(`bob@${U}`)!, 'each');
    const r = await post(list, 'idn-member-1@example.net', `Bob <bob@${A}>`);
    expect(r).toEqual({ archived: true, held: undefined });
  });

  it('a ban on one spelling drops posts From the other, and the held post names the sender as rules do', async () => {
    const list = await newList('open');
    await addSenderRule(db.pool, list, `bob@${U}`, 'ban', { actor: 'test' });
    await addSenderRule(db.pool, list, `@xn--exmple-cua.de`, 'ban', { actor: 'test' });
    expect(await post(list, 'idn-ban-1@example.net', `bob@${A}`)).toEqual({ archived: false, held: { state: 'discarded', rule: 'banned', from_email: `bob@${U}` } });
    expect(await post(list, 'idn-ban-2@example.net', 'eve@exämple.de')).toEqual({ archived: false, held: { state: 'discarded', rule: 'banned', from_email: 'eve@exämple.de' } });
    expect((await post(list, 'idn-ban-3@example.net', `carl@${A}`)).archived).toBe(true);
  });

  it('rows an earlier release stored in A-labels still count for posts until the conversion has run', async () => {
    const list = await newList('members');
    await db.pool.query(`insert into members (list_id, email, mode) values ($1, $2, 'each')`, [list.id, `old@${A}`]);
    await db.pool.query(`insert into sender_rules (list_id, email, kind, created_by) values ($1, $2, 'ban', 'old release')`, [list.id, `spam@${A}`]);
    try {
      expect((await post(list, 'idn-old-1@example.net', `old@${U}`)).archived).toBe(true);
      expect((await post(list, 'idn-old-2@example.net', `spam@${U}`)).held).toMatchObject({ state: 'discarded', rule: 'banned' });
    } finally {
      await db.pool.query('delete from members where list_id = $1', [list.id]);
      await db.pool.query('delete from sender_rules where list_id = $1', [list.id]);
    }
  });

  it('a bounce naming the member in A-labels, as the envelope had it, is the member\'s own report', async () => {
    const list = await newList();
    await addMember(db.pool, list.id, `bob@${U}`, 'each');
    const { rows: [{ token }] } = await db.pool.query<{ token: string }>('select token from members where list_id = $1', [list.id]);
    const block = (recipient: string, status: string, diagnostic: string) => ['', `Final-Recipient: rfc822; ${recipient}`, 'Action: failed', `Status: ${status}`, `Diagnostic-Code: smtp; ${diagnostic}`];
    // Two recipients: someone else's full mailbox first, the member's unknown address second.
    const dsn = ['From: MAILER-DAEMON@mx.example.net', `To: ${list.address}`, 'Subject: Undelivered Mail', 'Message-ID: <dsn-idn@mx.example.net>', 'MIME-Version: 1.0',
      'Content-Type: multipart/report; report-type=delivery-status; boundary=B', '', '--B', 'Content-Type: text/plain', '', 'It failed.', '--B',
      'Content-Type: message/delivery-status', '', 'Reporting-MTA: dns; mx.example.net', ...block('other@example.net', '5.2.2', '552 5.2.2 Mailbox full'),
      ...block(`bob@${A}`, '5.1.1', '550 5.1.1 No such user'), '', '--B--', ''].join('\r\n');
    const bounces = list.address.replace('@', `-bounces+${token}@`);
    expect((await sendRaw(smtp.port, { from: '', to: [bounces] }, dsn)).ok).toBe(true);
    const { rows } = await db.pool.query('select b.recipient, b.kind from bounces b join members m on m.id = b.member_id where m.list_id = $1', [list.id]);
    expect(rows).toEqual([{ recipient: `bob@${U}`, kind: 'hard' }]);
    await db.pool.query('delete from bounces where list_id = $1', [list.id]);
  });
});
