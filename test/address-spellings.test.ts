/*
 * One spelling per mailbox: `bob@xn--bcher-kva.example` (a domain in A-labels) and
 * `bob@bücher.example` (U-labels) are one address, stored in U-labels wherever it comes from
 * (the command line, a post's From, a bounce), and the address-spellings conversion job (sql/0074)
 * gives rows stored by earlier releases that spelling, merging the rows of both spellings.
 */

import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addressSpellings, strongerMember, strongerRule } from '../src/core/conversions/address-spellings.ts';
import { runConversionBatch } from '../src/core/conversions.ts';
import { addSenderRule } from '../src/core/sender-rules.ts';
import { createList, type ListRow } from '../src/db/lists.ts';
import { addMember, findMemberByToken, unsubscribeByToken } from '../src/db/members.ts';
import { mailboxSpellings, normalizeEmail, oldSpelling, parseMailbox, postSender } from '../src/mail/address.ts';
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

  it('is looked for in the archive in both spellings, as From was sent', () => {
    expect(mailboxSpellings(`Bob@XN--BCHER-KVA.Example`)).toEqual([`bob@${A}`, `bob@${U}`]);
    expect(mailboxSpellings(` bob@${U} `)).toEqual([`bob@${U}`, `bob@${A}`]);
    expect(mailboxSpellings('Bob@Example.org')).toEqual(['bob@example.org']);
    // No address normalizeEmail takes: only as typed.
    expect(mailboxSpellings('bob@xn--zz.example')).toEqual(['bob@xn--zz.example']);
  });

  it('is refused when it is no A-label: not punycode, or punycode that does not read back as itself', () => {
    for (const bad of ['bob@xn--zz.example', 'bob@xn--.example', 'bob@xn--abc-.example', 'bob@xn--bcher-kva-.example', `bob@${U.slice(0, 6)}.xn--abc-.example`]) {
      expect(normalizeEmail(bad), bad).toBeNull();
    }
    // Not an A-label at all: a hyphenated ASCII label is taken as it is.
    expect(normalizeEmail('bob@ab--c.example')).toBe('bob@ab--c.example');
  });
});

describe('which of two rows stays when the conversion merges them', () => {
  type Status = 'active' | 'pending' | 'disabled' | 'unsubscribed';
  const m = (id: number, status: Status, created: string) => ({ id, status, created_at: new Date(created) });
  const rule = (kind: 'allow' | 'ban', created: string, expires: string | null = null) => ({ kind, created_at: new Date(created), expires_at: expires ? new Date(expires) : null });

  it('keeps the stronger subscription, then the older', () => {
    const active = m(2, 'active', '2025-01-01');
    expect(strongerMember(m(1, 'unsubscribed', '2020-01-01'), active)).toBe(active);
    const older = m(9, 'active', '2019-01-01');
    expect(strongerMember(active, older)).toBe(older);
    expect(strongerMember(m(3, 'disabled', '2025-01-01'), m(4, 'pending', '2010-01-01')).id).toBe(3);
  });

  it('keeps the later of two kinds of rule, and the longer-lasting of one kind', () => {
    const ban = rule('ban', '2025-01-01');
    const allow = rule('allow', '2025-02-01');
    expect(strongerRule(ban, allow)).toBe(allow);
    expect(strongerRule(rule('ban', '2025-03-01', '2026-01-01'), ban)).toBe(ban);
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
      // Left for the conversion's test below, they would be in its report.
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

describe('the address-spellings conversion job', () => {
  const restart = () => db.pool.query(`update conversions set last_key = 0, done_at = null, started_at = null, rows_done = 0, rows_changed = 0 where name = 'address-spellings'`);
  async function runToEnd() {
    let batches = 0;
    for (let r = await runConversionBatch(db.pool, 'test', { batchRows: 2 }, [addressSpellings]); r.kind !== 'done'; r = await runConversionBatch(db.pool, 'test', { batchRows: 2 }, [addressSpellings])) {
      expect(r.kind).toBe('batch');
      if (++batches > 50) throw new Error('the job does not end');
    }
    return batches;
  }
  const q = async <T extends object>(sql: string, values: unknown[] = []) => (await db.pool.query<T & pg.QueryResultRow>(sql, values)).rows;

  it('respells what earlier releases stored in A-labels and merges both spellings without losing a subscription', async () => {
    const one = await newList();
    const two = await newList();
    // As a release before sql/0074 stored them: A-label spellings beside U-label ones.
    const member = async (list: ListRow, email: string, status: string, mode: string, created: string, name: string | null = null) =>
      (await q<{ id: number }>(`insert into members (list_id, email, status, mode, created_at, name) values ($1, $2, $3, $4, $5, $6) returning id`, [list.id, email, status, mode, created, name]))[0].id;
    const annOld = await member(one, `ann@${A}`, 'active', 'digest', '2020-01-01', 'Ann');
    const annNew = await member(one, `ann@${U}`, 'unsubscribed', 'each', '2024-01-01');
    await member(one, `cy@${A}`, 'active', 'each', '2021-01-01');
    const benU = await member(two, `ben@${U}`, 'active', 'each', '2019-01-01');
    const benA = await member(two, `ben@${A}`, 'active', 'nomail', '2023-01-01', 'Ben');
    await member(two, 'dan@xn--zz.example', 'active', 'each', '2022-01-01');
    await q(`insert into bounces (list_id, member_id, source, recipient, kind, category, counted) values ($1, $2, 'dsn', $3, 'hard', 'mailbox', true)`, [one.id, annNew, `ann@${A}`]);
    await q(`insert into bounces (list_id, member_id, source, recipient, kind, category, counted) values ($1, $2, 'dsn', $3, 'soft', 'mailbox', true)`, [two.id, benA, `ben@${A}`]);
    await q(`insert into sender_rules (list_id, email, kind, created_by, created_at) values ($1, $2, 'ban', 'a', '2024-01-01'), ($1, $3, 'allow', 'b', '2025-01-01'), ($1, $4, 'ban', 'c', '2024-01-01')`,
      [one.id, `@${A}`, `@${U}`, `spam@${A}`]);
    await q(`insert into list_roles (list_id, email, role) values ($1, $2, 'moderator'), ($1, $3, 'moderator'), ($1, $2, 'owner')`, [one.id, `mod@${A}`, `mod@${U}`]);
    const [eveOld] = await q<{ id: number }>(`insert into accounts (email, password_hash, created_at) values ($1, 'hash', '2020-01-01') returning id`, [`eve@${A}`]);
    const [eveNew] = await q<{ id: number }>(`insert into accounts (email, is_site_admin, created_at) values ($1, true, '2024-01-01') returning id`, [`eve@${U}`]);
    await q(`insert into account_addresses (account_id, email, verified_at) values ($1, 'eve@work.example', now())`, [eveNew.id]);
    await q(`insert into sessions (id_hash, account_id, expires_at) values ('s-eve-new', $1, now() + interval '1 day')`, [eveNew.id]);
    await q(`insert into subscription_requests (list_id, email, action, token_hash, via, expires_at) values ($1, $2, 'subscribe', 'h1', 'web', now() + interval '1 day')`, [one.id, `fay@${A}`]);
    await q(`insert into login_tokens (token_hash, email, purpose, expires_at) values ('t1', $1, 'login', now() + interval '1 hour')`, [`gus@${A}`]);
    await q(`insert into held_messages (list_id, message_id, raw, size, from_email, reason, rule) values ($1, 'held-idn@example.net', 'x', 1, $2, 'r', 'moderated')`, [one.id, `hal@${A}`]);

    const [{ token: benAToken }] = await q<{ token: string }>('select token from members where id = $1', [benA]);
    await restart();
    expect(await runToEnd()).toBeGreaterThan(1);

    // One member per mailbox and list, the stronger row kept, its history with it.
    const members = await q<{ id: number; list_id: number; email: string; status: string; mode: string; name: string | null }>(
      'select id, list_id, email, status, mode, name from members where list_id = any($1) order by list_id, email', [[one.id, two.id]]);
    expect(members).toEqual([
      { id: annOld, list_id: one.id, email: `ann@${U}`, status: 'active', mode: 'digest', name: 'Ann' },
      { id: expect.any(Number), list_id: one.id, email: `cy@${U}`, status: 'active', mode: 'each', name: null },
      { id: benU, list_id: two.id, email: `ben@${U}`, status: 'active', mode: 'each', name: 'Ben' },
      { id: expect.any(Number), list_id: two.id, email: 'dan@xn--zz.example', status: 'active', mode: 'each', name: null },
    ]);
    expect(await q('select member_id, recipient from bounces order by id')).toEqual([{ member_id: annOld, recipient: `ann@${U}` }, { member_id: benU, recipient: `ben@${U}` }]);
    // Each merge is in the list's audit log with both rows as they were.
    const merges = await q<{ action: string; list_id: number | null; target: string; detail: { kept?: { id?: number; email: string }; removed?: unknown } }>(
      `select action, list_id, target, detail from audit_log where actor = 'conversion:address-spellings' order by id`);
    expect(merges.map((m) => [m.action, m.list_id, m.target])).toEqual([
      ['account.merge', null, `eve@${U}`],
      ['role.merge', one.id, `mod@${U}`],
      ['member.merge', one.id, `ann@${U}`],
      ['member.merge', two.id, `ben@${U}`],
      ['sender.merge', one.id, `@${U}`],
    ]);
    expect(merges[2].detail.removed).toMatchObject({ id: annNew, email: `ann@${U}`, status: 'unsubscribed' });
    expect(merges[3].detail).toMatchObject({ kept: { id: benU, email: `ben@${U}` }, removed: { id: benA, email: `ben@${A}`, status: 'active', mode: 'nomail' } });

    // Rules: the later of two kinds stays; roles: one of each.
    expect(await q('select email, kind from sender_rules where list_id = $1 order by email', [one.id])).toEqual([{ email: `@${U}`, kind: 'allow' }, { email: `spam@${U}`, kind: 'ban' }]);
    expect(await q('select email, role from list_roles where list_id = $1 and email like $2 order by role', [one.id, 'mod@%'])).toEqual([{ email: `mod@${U}`, role: 'moderator' }, { email: `mod@${U}`, role: 'owner' }]);

    // Two accounts of one mailbox: the older stays, with the other's address, session and administration.
    expect(await q('select id, email, is_site_admin, password_hash from accounts where id = any($1)', [[eveOld.id, eveNew.id]])).toEqual([{ id: eveOld.id, email: `eve@${U}`, is_site_admin: true, password_hash: 'hash' }]);
    expect(await q<{ email: string; verified: boolean }>('select email, verified_at is not null as verified from account_addresses where account_id = $1 order by email', [eveOld.id]))
      .toEqual([{ email: `eve@${U}`, verified: true }, { email: 'eve@work.example', verified: true }]);
    expect(await q(`select account_id from sessions where id_hash = 's-eve-new'`)).toEqual([{ account_id: eveOld.id }]);

    // Records are respelled; the spelling that is no A-label is left, and reported.
    expect(await q('select email from subscription_requests where list_id = $1', [one.id])).toEqual([{ email: `fay@${U}` }]);
    expect(await q(`select email from login_tokens where token_hash = 't1'`)).toEqual([{ email: `gus@${U}` }]);
    expect(await q(`select from_email from held_messages where message_id = 'held-idn@example.net'`)).toEqual([{ from_email: `hal@${U}` }]);
    expect(await q(`select tbl, canonical from address_spellings where email = 'dan@xn--zz.example'`)).toEqual([{ tbl: 'members', canonical: null }]);
    // The report: every spelling met, what it became and what was done.
    const report = await q<{ tbl: string; email: string; canonical: string | null; outcome: string }>('select tbl, email, canonical, outcome from address_spellings order by tbl, email');
    expect(report.map((r) => `${r.tbl} ${r.email} → ${r.canonical}: ${r.outcome}`)).toEqual([
      `accounts eve@${A} → eve@${U}: respelled, 2 accounts merged into #${eveOld.id} (audit account.merge)`,
      `bounces ann@${A} → ann@${U}: respelled (1 row)`,
      `bounces ben@${A} → ben@${U}: respelled (1 row)`,
      `held_messages hal@${A} → hal@${U}: respelled (1 row)`,
      `list_roles mod@${A} → mod@${U}: respelled, 1 duplicate role removed (audit role.merge)`,
      `login_tokens gus@${A} → gus@${U}: respelled (1 row)`,
      `members ann@${A} → ann@${U}: respelled, 1 list had both spellings: merged (audit member.merge)`,
      `members ben@${A} → ben@${U}: respelled, 1 list had both spellings: merged (audit member.merge)`,
      `members cy@${A} → cy@${U}: respelled`,
      'members dan@xn--zz.example → null: not a valid A-label: left as it is',
      `sender_rules @${A} → @${U}: respelled, 1 list had both spellings: merged (audit sender.merge)`,
      `sender_rules spam@${A} → spam@${U}: respelled`,
      `subscription_requests fay@${A} → fay@${U}: respelled (1 row)`,
    ]);
    const [job] = await q<{ done: boolean; changed: number }>(`select done_at is not null as done, rows_changed::int as changed from conversions where name = 'address-spellings'`);
    expect(job.done).toBe(true);

    // Mail sent before to the removed row carries its token (unsubscribe link, return address): it
    // names the kept member, and unsubscribes it.
    expect((await findMemberByToken(db.pool, benAToken))?.id).toBe(benU);
    expect(await unsubscribeByToken(db.pool, benAToken)).toMatchObject({ id: benU, status: 'unsubscribed' });
  });

  it('reports a spelling it cannot convert, leaves it as it is, and converts the rest', async () => {
    const list = await newList();
    await q(`insert into held_messages (list_id, message_id, raw, size, from_email, reason, rule) values ($1, 'held-stuck@example.net', 'x', 1, $2, 'r', 'moderated'), ($1, 'held-fine@example.net', 'x', 1, $3, 'r', 'moderated')`,
      [list.id, `stuck@${A}`, `fine@${A}`]);
    // A constraint (added NOT VALID, as an operator might) that refuses the one row's new spelling.
    await q(`alter table held_messages add constraint no_stuck_unicode check (from_email <> 'stuck@${U}') not valid`);
    try {
      await restart();
      await runToEnd();
    } finally {
      await q('alter table held_messages drop constraint no_stuck_unicode');
    }
    expect(await q(`select message_id, from_email from held_messages where list_id = $1 order by message_id`, [list.id]))
      .toEqual([{ message_id: 'held-fine@example.net', from_email: `fine@${U}` }, { message_id: 'held-stuck@example.net', from_email: `stuck@${A}` }]);
    const [stuck] = await q<{ canonical: string | null; outcome: string }>(`select canonical, outcome from address_spellings where tbl = 'held_messages' and email = $1`, [`stuck@${A}`]);
    expect(stuck.canonical).toBeNull();
    expect(stuck.outcome).toMatch(/^not converted: .*no_stuck_unicode/);
    expect(await q(`select count(*)::int as n from conversion_skips where name = 'address-spellings'`)).toEqual([{ n: 0 }]);
    await q(`delete from held_messages where list_id = $1`, [list.id]);
  });

  it('is put back to work by an A-label spelling written after it finished (a previous release during an upgrade)', async () => {
    const list = await newList();
    await restart();
    await runToEnd();
    await q(`insert into members (list_id, email, mode) values ($1, $2, 'each')`, [list.id, `late@${A}`]);
    expect(await q(`select done_at is null as open from conversions where name = 'address-spellings'`)).toEqual([{ open: true }]);
    await runToEnd();
    expect(await q('select email from members where list_id = $1', [list.id])).toEqual([{ email: `late@${U}` }]);
    // The spelling left as it is does not keep it busy: started again, it is done at once.
    await restart();
    expect(await runToEnd()).toBe(0);
  });

  it("gives a list's Reply-To address stored in A-labels the one spelling that setting it stores, and a previous release's write of one sets it going again", async () => {
    const list = await newList();
    const other = await newList();
    // Set by name, however typed: the one spelling (the panel and the REST API check it alike).
    const set = await cli(['list', 'set', list.address, 'reply_to=address', 'reply_to_address=Help@XN--BCHER-KVA.example'], { DATABASE_URL: db.url, MAIL_DOMAIN: 'lists.example.org' });
    expect([set.code, set.stderr]).toEqual([0, '']);
    const replyTo = () => q<{ address: string; reply_to_address: string | null }>('select address, reply_to_address from lists where id = any($1) order by id', [[list.id, other.id]]);
    expect(await replyTo()).toEqual([{ address: list.address, reply_to_address: `help@${U}` }, { address: other.address, reply_to_address: null }]);
    await restart();
    await runToEnd();
    // As a release before sql/0074 stored it, during a rolling upgrade: the job is open again.
    await q('update lists set reply_to_address = $2 where id = $1', [list.id, `help@${A}`]);
    await q('update lists set reply_to_address = $2 where id = $1', [other.id, 'help@xn--zz.example']);
    expect(await q(`select done_at is null as open from conversions where name = 'address-spellings'`)).toEqual([{ open: true }]);
    await runToEnd();
    expect(await replyTo()).toEqual([{ address: list.address, reply_to_address: `help@${U}` }, { address: other.address, reply_to_address: 'help@xn--zz.example' }]);
    expect(await q(`select email, canonical, outcome from address_spellings where tbl = 'lists' order by email`)).toEqual([
      { email: `help@${A}`, canonical: `help@${U}`, outcome: 'respelled (1 row)' },
      { email: 'help@xn--zz.example', canonical: null, outcome: 'not a valid A-label: left as it is' },
    ]);
  });
});
