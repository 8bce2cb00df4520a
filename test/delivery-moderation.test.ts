import os from 'node:os';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createList } from '../src/db/lists.ts';
import { addMember, findMember, pauseMember, removeMember } from '../src/db/members.ts';
import { periodic } from '../src/delivery/maintenance.ts';
import { log } from '../src/log.ts';
import { enqueueMail, insertOutboundMail, pruneFinished, queueStats } from '../src/db/outbox.ts';
import { recentFailedDeliveries } from '../src/db/operations.ts';
import { changeOwnSubscription } from '../src/core/members.ts';
import { hideMessage } from '../src/core/hidden-messages.ts';
import type { DeliveryWorker } from '../src/delivery/worker.ts';
import { getHeld, listHeld, moderate } from '../src/core/hold.ts';
import { addSenderRule } from '../src/core/sender-rules.ts';
import { config } from '../src/config.ts';
import { parse } from '../src/mail/parse.ts';
import { drained, startCaptureRelay, startWorker, workerConfig, type CaptureRelay } from './helpers/capture-relay.ts';
import { cli } from './helpers/cli.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { message, sendRaw, smtpDialogue, startIngest, type RunningIngest } from './helpers/smtp.ts';

let db: TestDatabase;
let relay: CaptureRelay;
let smtp: RunningIngest;
let worker: DeliveryWorker;

const MEMBERS = ['ann@x.example', 'ben@y.example'];
const STRANGER = 'stranger@elsewhere.example';

/**
 * Each test makes its own list, with two members and an owner of its own, and posts its own
 * messages, so that it stands alone: nothing it asserts depends on what an earlier test sent.
 */
let lists = 0;
async function newList(postPolicy: 'open' | 'members' | 'moderated') {
  const local = `${postPolicy}-${++lists}`;
  const owner = `owner-${local}@example.org`;
  const list = await createList(db.pool, { address: `${local}@lists.example.org`, name: local, description: '', postPolicy, subscribePolicy: 'confirm', archive: 'public', owners: [owner] });
  for (const email of MEMBERS) await addMember(db.pool, list.id, email, 'each');
  return { list, local, owner, id: (n: number | string) => `${local}-${n}@example.org` };
}

async function postTo(list: string, id: string, opts: { from?: string; subject?: string; headers?: Record<string, string> } = {}) {
  const from = opts.from ?? STRANGER;
  return sendRaw(smtp.port, { from, to: [`${list}@lists.example.org`] }, message({ id, from, to: `${list}@lists.example.org`, subject: opts.subject ?? `Post ${id}`, headers: opts.headers }));
}

const archived = async (messageId: string) => (await db.pool.query('select 1 from messages where message_id = $1', [messageId])).rows.length > 0;
const copiesOf = (messageId: string) => relay.messages.filter((m) => m.raw.toString('latin1').includes(`Message-ID: <${messageId}>`) && MEMBERS.includes(m.to));
const settle = async () => {
  await drained(db);
  await new Promise((r) => setTimeout(r, 300));
};
/** Mail the relay took for an address, once at least `n` have come (or after 10 s). */
async function mailTo(address: string, n: number) {
  const deadline = Date.now() + 10_000;
  while (relay.to(address).length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  return relay.to(address);
}
/** A post held on a moderated list of its own. */
async function heldPost(opts: { from?: string; subject?: string } = {}) {
  const l = await newList('moderated');
  const messageId = l.id(1);
  expect((await postTo(l.local, messageId, opts)).ok).toBe(true);
  const [held] = (await listHeld(db.pool, l.list.id)).filter((h) => h.message_id === messageId);
  expect(held).toBeDefined();
  return { ...l, messageId, held };
}

beforeAll(async () => {
  db = await testDatabase();
  relay = await startCaptureRelay();
  smtp = await startIngest(db.pool);
  worker = await startWorker(db, workerConfig(relay));
});

afterAll(async () => {
  await worker?.stop();
  await smtp?.stop();
  await relay?.stop();
  await db?.drop();
});

describe('holding posts', () => {
  it('accepts a post to a moderated list at SMTP but keeps it out of the archive and the mail', async () => {
    const { list, local, id } = await newList('moderated');
    const res = await postTo(local, id(1), { subject: 'Please let me in' });
    expect(res.ok).toBe(true);
    expect(res.response).toMatch(/^250 /);
    expect(await archived(id(1))).toBe(false);
    const held = await listHeld(db.pool, list.id);
    expect(held).toEqual([expect.objectContaining({ message_id: id(1), from: STRANGER, subject: 'Please let me in' })]);
    expect(held[0].reason).toContain('moderated');
    await settle();
    expect(copiesOf(id(1))).toHaveLength(0);
  });

  it('tells the owners about the first held post at once', async () => {
    const { local, owner, id } = await newList('moderated');
    expect((await postTo(local, id(1), { subject: 'Please let me in' })).ok).toBe(true);
    const notices = await mailTo(owner, 1);
    expect(notices).toHaveLength(1);
    const notice = await parse(notices[0].raw);
    expect(notice.subject).toBe(`1 post held for moderation on ${local}@lists.example.org`);
    expect(notice.text).toContain(`${STRANGER}: Please let me in`);
  });

  it('sums a flood of held posts up in one notice per interval, not one per post', async () => {
    const { list, local, owner, id } = await newList('moderated');
    expect((await postTo(local, id(1))).ok).toBe(true);
    expect(await mailTo(owner, 1)).toHaveLength(1);
    for (let i = 2; i <= 6; i++) expect((await postTo(local, id(i))).ok).toBe(true);
    await settle();
    expect(relay.to(owner)).toHaveLength(1);
    // The interval passes: the next maintenance round sends one notice listing the five.
    await db.pool.query(`update lists set held_notified_at = now() - interval '1 hour' where id = $1`, [list.id]);
    const notices = await mailTo(owner, 2);
    expect(notices).toHaveLength(2);
    const summary = await parse(notices[1].raw);
    expect(summary.subject).toBe(`5 posts held for moderation on ${local}@lists.example.org`);
    for (let i = 2; i <= 6; i++) expect(summary.text).toContain(`Post ${id(i)}`);
  });

  it('does not hold the same message twice when the sender retries', async () => {
    const { list, local, id } = await newList('moderated');
    expect((await postTo(local, id(1), { subject: 'Please let me in' })).ok).toBe(true);
    expect((await postTo(local, id(1), { subject: 'Please let me in' })).ok).toBe(true);
    expect((await listHeld(db.pool, list.id)).filter((h) => h.message_id === id(1))).toHaveLength(1);
  });

  it('refuses another message under the Message-ID of a held post, and keeps it aside', async () => {
    const { list, local, id } = await newList('moderated');
    expect((await postTo(local, id(1), { subject: 'Please let me in' })).ok).toBe(true);
    const res = await postTo(local, id(1), { subject: 'Something else entirely' });
    expect(res.ok).toBe(false);
    expect(res.responseCode).toBe(554);
    const held = (await listHeld(db.pool, list.id)).filter((h) => h.message_id === id(1));
    expect(held.map((h) => h.subject)).toEqual(['Please let me in']);
    const { rows } = await db.pool.query(`select reason, raw from ingest_errors where message_id = $1`, [id(1)]);
    expect(rows).toHaveLength(1);
    expect(rows[0].reason).toMatch(/already names a different message in the moderation queue/);
    expect(rows[0].raw.toString()).toContain('Something else entirely');
  });

  it('holds a stranger on a members-only list and passes a member', async () => {
    const { list, local, id } = await newList('members');
    await postTo(local, id('stranger'));
    await postTo(local, id('member'), { from: 'ann@x.example' });
    expect((await listHeld(db.pool, list.id)).map((h) => h.message_id)).toEqual([id('stranger')]);
    expect(await archived(id('member'))).toBe(true);
  });
});

describe('moderating', () => {
  it('delivers an approved post exactly once, through the same path as an accepted one', async () => {
    const { list, messageId, held } = await heldPost({ subject: 'Please let me in' });
    const results = await Promise.allSettled([
      moderate(db.pool, held.id, 'approve', { actor: 'mod-a@example.org', settings: config() }),
      moderate(db.pool, held.id, 'approve', { actor: 'mod-b@example.org', settings: config() }),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const failure = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(failure.reason.message).toMatch(/already approved/);
    await relay.waitFor(relay.messages.length + 0);
    await settle();
    expect(copiesOf(messageId).map((m) => m.to).sort()).toEqual(MEMBERS);
    expect(await archived(messageId)).toBe(true);
    const decided = await getHeld(db.pool, held.id);
    expect(decided).toMatchObject({ state: 'approved', list_id: list.id });
    expect(['mod-a@example.org', 'mod-b@example.org']).toContain(decided!.decided_by);
    expect(Buffer.isBuffer(decided!.raw)).toBe(true);
  });

  it('never delivers or archives a discarded post', async () => {
    const { messageId, held } = await heldPost();
    await moderate(db.pool, held.id, 'discard', { actor: 'mod-a@example.org', settings: config() });
    await settle();
    expect(copiesOf(messageId)).toHaveLength(0);
    expect(await archived(messageId)).toBe(false);
    expect(await getHeld(db.pool, held.id)).toMatchObject({ state: 'discarded', decided_by: 'mod-a@example.org' });
  });

  it('tells the sender of a rejected post why', async () => {
    const sender = 'rejected-sender@elsewhere.example';
    const { local, messageId, held } = await heldPost({ from: sender });
    await moderate(db.pool, held.id, 'reject', { actor: 'mod-a@example.org', reason: 'Off topic for this list', settings: config() });
    await settle();
    const [notice] = await mailTo(sender, 1);
    const parsed = await parse(notice.raw);
    expect(parsed.subject).toBe(`Your message to ${local}@lists.example.org was rejected`);
    expect(parsed.text).toContain('Reason: Off topic for this list');
    expect(parsed.inReplyTo).toBe(messageId);
    expect(copiesOf(messageId)).toHaveLength(0);
    expect(await getHeld(db.pool, held.id)).toMatchObject({ state: 'rejected', decision_reason: 'Off topic for this list' });
  });

  it('accepts an allowlisted sender without moderation and drops a banned one', async () => {
    const { list, local, owner, id } = await newList('moderated');
    await addSenderRule(db.pool, list, 'friend@elsewhere.example', 'allow', { actor: owner });
    await addSenderRule(db.pool, list, '@spam.example', 'ban', { actor: owner, days: 1 });
    await postTo(local, id('friend'), { from: 'friend@elsewhere.example' });
    await postTo(local, id('spam'), { from: 'bot@spam.example' });
    await settle();
    expect(copiesOf(id('friend'))).toHaveLength(2);
    expect(copiesOf(id('spam'))).toHaveLength(0);
    const { rows } = await db.pool.query(`select state, rule, decided_by from held_messages where message_id = $1`, [id('spam')]);
    expect(rows).toEqual([{ state: 'discarded', rule: 'banned', decided_by: 'rule:banned' }]);
  });

  it('drops our own copy when it comes back to the list', async () => {
    const { local, id } = await newList('members');
    const res = await postTo(local, id('looped'), { from: 'ann@x.example', headers: { 'List-Id': `<${local}.lists.example.org>` } });
    expect(res.ok).toBe(true);
    expect(await archived(id('looped'))).toBe(false);
    const { rows } = await db.pool.query(`select state, rule from held_messages where message_id = $1`, [id('looped')]);
    expect(rows).toEqual([{ state: 'discarded', rule: 'loop' }]);
  });
});

describe('command line', () => {
  const env = () => ({ DATABASE_URL: db.url, MAIL_DOMAIN: 'lists.example.org' });

  it('lists held messages as JSON with the documented fields: id, message_id, from, subject, reason, received_at', async () => {
    const { local, id } = await newList('moderated');
    for (let i = 1; i <= 3; i++) expect((await postTo(local, id(i))).ok).toBe(true);
    const res = await cli(['held', local, '--json'], env());
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    const rows = JSON.parse(res.stdout);
    expect(rows).toHaveLength(3);
    for (const r of rows) expect(Object.keys(r).sort()).toEqual(['from', 'id', 'message_id', 'reason', 'received_at', 'subject']);
    expect(rows[0]).toMatchObject({ message_id: id(1), from: STRANGER, subject: `Post ${id(1)}` });
    expect(new Date(rows[0].received_at).toString()).not.toBe('Invalid Date');
  });

  it('approves by id from the command line and refuses a second decision', async () => {
    const { local } = await heldPost();
    const [first] = JSON.parse((await cli(['held', local, '--json'], env())).stdout);
    const ok = await cli(['moderate', String(first.id), 'approve'], env());
    expect(ok.code).toBe(0);
    expect(ok.stdout).toBe(`held message ${first.id} approved\n`);
    const again = await cli(['moderate', String(first.id), 'discard', '--reason', 'changed my mind'], env());
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/already approved/);
    await settle();
    expect(copiesOf(first.message_id)).toHaveLength(2);
  });

  it('records each decision made on the command line in the audit log, as the operating-system user', { timeout: 90_000 }, async () => {
    const { local, held } = await heldPost();
    const r = await cli(['moderate', String(held.id), 'reject', '--reason', 'Off topic'], env());
    expect(r.code).toBe(0);
    const refused = await cli(['moderate', String(held.id), 'approve'], env());
    expect(refused.code).not.toBe(0);
    const { rows } = await db.pool.query(`select actor, action, list_address, target, detail from audit_log where target = $1`, [held.message_id]);
    // The refused second decision left nothing behind.
    expect(rows).toEqual([{
      actor: `cli:${os.userInfo().username}`, action: 'held.reject', list_address: `${local}@lists.example.org`, target: held.message_id,
      detail: { id: held.id, from: held.from, subject: held.subject, reason: 'Off topic' },
    }]);
    expect((await db.pool.query(`select state, decided_by from held_messages where id = $1`, [held.id])).rows).toEqual([{ state: 'rejected', decided_by: `cli:${os.userInfo().username}` }]);
  });

  it('rejects an unknown action and an unknown id with a clear message', async () => {
    expect((await cli(['moderate', '1', 'bless'], env())).stderr).toMatch(/approve, reject, discard/);
    const missing = await cli(['moderate', '999999', 'approve'], env());
    expect(missing.code).toBe(3);
    expect(missing.stderr).toMatch(/no held message 999999/);
  });

  it('shows the queue as JSON: counts by state, the oldest waiting row, the workers', async () => {
    const { local, id } = await newList('members');
    expect((await postTo(local, id('sent'), { from: 'ann@x.example' })).ok).toBe(true);
    await settle();
    const res = await cli(['queue', '--json'], env());
    expect(res.code).toBe(0);
    const q = JSON.parse(res.stdout);
    expect(Object.keys(q.counts).sort()).toEqual(['failed', 'queued', 'sending', 'sent']);
    expect(q.counts.sent).toBeGreaterThan(0);
    expect(q).toHaveProperty('oldest');
    expect(q.workers.map((w: { name: string }) => w.name)).toContain(worker.name);
  });
});

describe('a setting changed while a post is on its way', () => {
  it('decides the post by the list as committed when it arrives, not as the listener saw it at RCPT', async () => {
    const list = await createList(db.pool, { address: 'turning@lists.example.org', name: 'turning', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: ['turner@example.org'] });
    const s = await smtpDialogue(smtp.port);
    expect(await s.say('EHLO test.example')).toMatch(/^250/);
    expect(await s.say('MAIL FROM:<stranger@elsewhere.example>')).toMatch(/^250/);
    expect(await s.say('RCPT TO:<turning@lists.example.org>')).toMatch(/^250/);
    // The session already holds the open list; the listener's cache has not heard of this yet.
    await db.pool.query(`update lists set post_policy = 'moderated' where id = $1`, [list.id]);
    expect(await s.say('DATA')).toMatch(/^354/);
    const raw = message({ id: 'turned-1@example.org', from: 'stranger@elsewhere.example', to: 'turning@lists.example.org', subject: 'Sent while it turned' });
    expect(await s.say(`${raw}\r\n.`)).toMatch(/^250/);
    s.close();
    expect(await archived('turned-1@example.org')).toBe(false);
    const held = await listHeld(db.pool, list.id);
    expect(held.map((h) => [h.message_id, h.reason])).toEqual([['turned-1@example.org', expect.stringContaining('moderated')]]);
  });
});

describe('copies waiting for a retry', () => {
  const W = ['ann', 'bob', 'cat', 'dan', 'eve'].map((n) => `${n}@wait.example`);
  const [ANN, BOB, CAT, DAN, EVE] = W;
  const outboxOf = async (messageId: string) => (await db.pool.query<{ recipient: string; state: string; last_error: string | null }>(
    `select o.recipient, o.state, o.last_error from outbox o join messages m on m.id = o.message_id where m.message_id = $1 order by o.recipient`, [messageId])).rows;
  const marked = (address: string, marker: string) => relay.to(address).filter((m) => m.raw.includes(marker));
  afterEach(() => relay.setRule(null));

  /** Posts to a list of W's members; every copy but bob's is deferred at RCPT and waits for a retry. */
  async function postWhileDeferred(local: string) {
    const list = await createList(db.pool, { address: `${local}@lists.example.org`, name: local, description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [`owner-${local}@example.org`] });
    for (const email of W) await addMember(db.pool, list.id, email, 'each');
    const messageId = `${local}-1@example.org`;
    // Refused until retryNow(): a retry that comes sooner is deferred again.
    relay.setRule((a) => (W.includes(a) && a !== BOB ? { code: 451, message: '4.7.1 try again later' } : null));
    expect((await postTo(local, messageId)).ok).toBe(true);
    await relay.copy(BOB, `Message-ID: <${messageId}>`);
    await drained(db);
    expect((await outboxOf(messageId)).filter((r) => r.state === 'queued').map((r) => r.recipient)).toEqual([ANN, CAT, DAN, EVE]);
    const member = async (email: string) => (await findMember(db.pool, list.id, email))!;
    return { list, messageId, member };
  }

  /** The waiting copies are due again now; returns once the workers have dealt with them. */
  async function retryNow(messageId: string) {
    relay.setRule(null);
    await db.pool.query(`update outbox o set run_at = now() from messages m where m.id = o.message_id and m.message_id = $1 and o.state = 'queued'`, [messageId]);
    await drained(db);
  }

  it('are not sent to a member who paused delivery, left or was disabled meanwhile, and say why', async () => {
    const { messageId, member } = await postWhileDeferred('waiting');
    await changeOwnSubscription(db.pool, (await member(ANN)).id, { email: ANN, emails: [ANN] }, { mode: 'nomail', until: new Date(Date.now() + 10 * 86_400_000) });
    await changeOwnSubscription(db.pool, (await member(CAT)).id, { email: CAT, emails: [CAT] }, 'unsubscribe');
    await db.pool.query(`update members set status = 'disabled', disabled_at = now() where id = $1`, [(await member(EVE)).id]);
    await retryNow(messageId);
    expect(marked(DAN, messageId)).toHaveLength(1);
    for (const gone of [ANN, CAT, EVE]) expect(marked(gone, messageId)).toHaveLength(0);
    expect(await outboxOf(messageId)).toEqual([
      { recipient: ANN, state: 'cancelled', last_error: 'not sent: the member now takes nomail' },
      { recipient: BOB, state: 'sent', last_error: null },
      { recipient: CAT, state: 'cancelled', last_error: 'not sent: the member is unsubscribed' },
      { recipient: DAN, state: 'sent', last_error: null },
      { recipient: EVE, state: 'cancelled', last_error: 'not sent: the member is disabled' },
    ]);
    // Apart from failures: counted on their own, listed nowhere as a delivery problem, pruned as finished rows are.
    expect((await queueStats(db.pool, 60)).cancelled).toBeGreaterThanOrEqual(3);
    expect((await recentFailedDeliveries(db.pool, 1000)).filter((f) => f.last_error?.startsWith('not sent:'))).toEqual([]);
    await db.pool.query(`update outbox o set created_at = now() - interval '30 days', sent_at = o.sent_at - interval '30 days' from messages m where m.id = o.message_id and m.message_id = $1`, [messageId]);
    await pruneFinished(db.pool, 7);
    expect(await outboxOf(messageId)).toEqual([]);
  });

  it('of a post a moderator hid meanwhile are not sent at all', async () => {
    const { list, messageId } = await postWhileDeferred('hiding');
    await hideMessage(db.pool, list, messageId, { category: 'privacy', actor: 'mod@example.org' });
    await retryNow(messageId);
    for (const waiting of [ANN, CAT, DAN, EVE]) expect(marked(waiting, messageId)).toHaveLength(0);
    const rows = await outboxOf(messageId);
    expect(rows.filter((r) => r.recipient !== BOB).map((r) => [r.state, r.last_error])).toEqual(Array(4).fill(['cancelled', 'not sent: the post was hidden by a moderator']));
  });

  it('of a digest are not sent to a member who left, while notices to them still are', async () => {
    const list = await createList(db.pool, { address: 'leaving@lists.example.org', name: 'leaving', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: ['owner-leaving@example.org'] });
    await addMember(db.pool, list.id, 'fay@wait.example', 'digest');
    const m = (await findMember(db.pool, list.id, 'fay@wait.example'))!;
    await removeMember(db.pool, list.id, m.email);
    const queue = async (kind: 'digest' | 'notice', subject: string) => {
      const mailId = await insertOutboundMail(db.pool, Buffer.from(message({ id: `${subject}@example.org`, from: 'leaving-request@lists.example.org', to: 'fay@wait.example', subject })));
      await enqueueMail(db.pool, kind, list.id, mailId, [{ email: 'fay@wait.example', envelopeFrom: 'leaving-bounces@lists.example.org', memberId: m.id, memberToken: m.token }]);
    };
    await queue('digest', 'leaving-digest');
    await queue('notice', 'leaving-notice');
    await drained(db);
    expect(marked('fay@wait.example', 'leaving-notice')).toHaveLength(1);
    expect(marked('fay@wait.example', 'leaving-digest')).toHaveLength(0);
    const { rows } = await db.pool.query('select kind, state, last_error from outbox where list_id = $1 order by id', [list.id]);
    expect(rows).toEqual([
      { kind: 'digest', state: 'cancelled', last_error: 'not sent: the member is unsubscribed' },
      { kind: 'notice', state: 'sent', last_error: null },
    ]);
  });
});

describe('maintenance', () => {
  it('ends a vacation that is due even when a digest fails every time', async () => {
    const list = await createList(db.pool, { address: 'stuck@lists.example.org', name: 'stuck', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: ['owner-stuck@example.org'] });
    await addMember(db.pool, list.id, 'reader@stuck.example', 'digest');
    await addMember(db.pool, list.id, 'away@stuck.example', 'each');
    await pauseMember(db.pool, list.id, 'away@stuck.example', new Date(Date.now() + 86_400_000));
    await db.pool.query(`update members set nomail_until = now() - interval '1 minute' where email = 'away@stuck.example'`);
    // The digest's transaction fails every time it numbers the issue.
    await db.pool.query(`create function fail_digest() returns trigger language plpgsql as $$ begin raise exception 'no digest today'; end $$;
      create trigger fail_digest before update of digest_issue on lists for each row when (new.id = ${Number(list.id)}) execute function fail_digest()`);
    try {
      expect((await postTo('stuck', 'stuck-1@example.org')).ok).toBe(true);
      await db.pool.query(`update digest_items set added_at = now() - interval '25 hours' where list_id = $1`, [list.id]);
      await periodic(db.pool, workerConfig(relay), log);
      // The worker's own pass may be ending it at the same moment (rows claimed with SKIP LOCKED).
      for (let i = 0; i < 100 && (await findMember(db.pool, list.id, 'away@stuck.example'))!.mode !== 'each'; i++) await new Promise((r) => setTimeout(r, 50));
      expect(await findMember(db.pool, list.id, 'away@stuck.example')).toMatchObject({ mode: 'each', nomail_until: null });
      expect((await db.pool.query('select count(*)::int as n from digest_items where list_id = $1', [list.id])).rows[0].n).toBe(1);
    } finally {
      await db.pool.query('drop trigger fail_digest on lists; drop function fail_digest()');
    }
  });
});
