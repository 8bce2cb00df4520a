import os from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createList, type ListRow } from '../src/db/lists.ts';
import { addMember } from '../src/db/members.ts';
import type { DeliveryWorker } from '../src/delivery/worker.ts';
import { getHeld, listHeld, moderate } from '../src/core/hold.ts';
import { addSenderRule } from '../src/core/sender-rules.ts';
import { parse } from '../src/mail/parse.ts';
import { drained, startCaptureRelay, startWorker, workerConfig, type CaptureRelay } from './helpers/capture-relay.ts';
import { cli } from './helpers/cli.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { message, sendRaw, smtpDialogue, startIngest, type RunningIngest } from './helpers/smtp.ts';
import { config } from '../src/config.ts';

let db: TestDatabase;
let relay: CaptureRelay;
let smtp: RunningIngest;
let worker: DeliveryWorker;
let mod: ListRow;
let members: ListRow;

const OWNER = 'owner@example.org';

async function newList(local: string, postPolicy: 'open' | 'members' | 'moderated') {
  const list = await createList(db.pool, { address: `${local}@lists.example.org`, name: local, description: '', postPolicy, subscribePolicy: 'confirm', archive: 'public', owners: [OWNER] });
  await addMember(db.pool, list.id, 'ann@x.example', 'each');
  await addMember(db.pool, list.id, 'ben@y.example', 'each');
  return list;
}

async function postTo(list: string, id: string, opts: { from?: string; subject?: string; headers?: Record<string, string> } = {}) {
  const from = opts.from ?? 'stranger@elsewhere.example';
  return sendRaw(smtp.port, { from, to: [`${list}@lists.example.org`] }, message({ id, from, to: `${list}@lists.example.org`, subject: opts.subject ?? `Post ${id}`, headers: opts.headers }));
}

const archived = async (messageId: string) => (await db.pool.query('select 1 from messages where message_id = $1', [messageId])).rows.length > 0;
const copiesOf = (messageId: string) => relay.messages.filter((m) => m.raw.toString('latin1').includes(`Message-ID: <${messageId}>`) && m.to !== OWNER);
const settle = async () => {
  await drained(db);
  await new Promise((r) => setTimeout(r, 300));
};

beforeAll(async () => {
  db = await testDatabase();
  relay = await startCaptureRelay();
  smtp = await startIngest(db.pool);
  mod = await newList('mod', 'moderated');
  members = await newList('team', 'members');
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
    const res = await postTo('mod', 'held-1@example.org', { subject: 'Please let me in' });
    expect(res.ok).toBe(true);
    expect(res.response).toMatch(/^250 /);
    expect(await archived('held-1@example.org')).toBe(false);
    const held = await listHeld(db.pool, mod.id);
    expect(held).toEqual([expect.objectContaining({ message_id: 'held-1@example.org', from: 'stranger@elsewhere.example', subject: 'Please let me in' })]);
    expect(held[0].reason).toContain('moderated');
    await settle();
    expect(copiesOf('held-1@example.org')).toHaveLength(0);
  });

  it('tells the owners about the first held post at once', async () => {
    const notices = relay.to(OWNER);
    expect(notices).toHaveLength(1);
    const notice = await parse(notices[0].raw);
    expect(notice.subject).toBe('1 post held for moderation on mod@lists.example.org');
    expect(notice.text).toContain('stranger@elsewhere.example: Please let me in');
  });

  it('sums a flood of held posts up in one notice per interval, not one per post', async () => {
    for (let i = 2; i <= 6; i++) expect((await postTo('mod', `held-${i}@example.org`)).ok).toBe(true);
    await settle();
    expect(relay.to(OWNER)).toHaveLength(1);
    // The interval passes: the next maintenance round sends one notice listing the five.
    await db.pool.query(`update lists set held_notified_at = now() - interval '1 hour' where id = $1`, [mod.id]);
    const deadline = Date.now() + 10_000;
    while (relay.to(OWNER).length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    const notices = relay.to(OWNER);
    expect(notices).toHaveLength(2);
    const summary = await parse(notices[1].raw);
    expect(summary.subject).toBe('5 posts held for moderation on mod@lists.example.org');
    for (let i = 2; i <= 6; i++) expect(summary.text).toContain(`Post held-${i}@example.org`);
  });

  it('does not hold the same message twice when the sender retries', async () => {
    expect((await postTo('mod', 'held-1@example.org', { subject: 'Please let me in' })).ok).toBe(true);
    expect((await listHeld(db.pool, mod.id)).filter((h) => h.message_id === 'held-1@example.org')).toHaveLength(1);
  });

  it('refuses another message under the Message-ID of a held post, and keeps it aside', async () => {
    const res = await postTo('mod', 'held-1@example.org', { subject: 'Something else entirely' });
    expect(res.ok).toBe(false);
    expect(res.responseCode).toBe(554);
    const held = (await listHeld(db.pool, mod.id)).filter((h) => h.message_id === 'held-1@example.org');
    expect(held.map((h) => h.subject)).toEqual(['Please let me in']);
    const { rows } = await db.pool.query(`select reason, raw from ingest_errors where message_id = 'held-1@example.org'`);
    expect(rows).toHaveLength(1);
    expect(rows[0].reason).toMatch(/already names a different message in the moderation queue/);
    expect(rows[0].raw.toString()).toContain('Something else entirely');
  });

  it('holds a stranger on a members-only list and passes a member', async () => {
    await postTo('team', 'team-stranger@example.org');
    await postTo('team', 'team-member@example.org', { from: 'ann@x.example' });
    expect((await listHeld(db.pool, members.id)).map((h) => h.message_id)).toEqual(['team-stranger@example.org']);
    expect(await archived('team-member@example.org')).toBe(true);
  });
});

describe('moderating', () => {
  it('delivers an approved post exactly once, through the same path as an accepted one', async () => {
    const [held] = (await listHeld(db.pool, mod.id)).filter((h) => h.message_id === 'held-1@example.org');
    const results = await Promise.allSettled([
      moderate(db.pool, held.id, 'approve', { actor: 'mod-a@example.org', settings: config() }),
      moderate(db.pool, held.id, 'approve', { actor: 'mod-b@example.org', settings: config() }),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const failure = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(failure.reason.message).toMatch(/already approved/);
    await relay.waitFor(relay.messages.length + 0);
    await settle();
    expect(copiesOf('held-1@example.org').map((m) => m.to).sort()).toEqual(['ann@x.example', 'ben@y.example']);
    expect(await archived('held-1@example.org')).toBe(true);
    const decided = await getHeld(db.pool, held.id);
    expect(decided).toMatchObject({ state: 'approved', list_id: mod.id });
    expect(['mod-a@example.org', 'mod-b@example.org']).toContain(decided!.decided_by);
    expect(Buffer.isBuffer(decided!.raw)).toBe(true);
  });

  it('never delivers or archives a discarded post', async () => {
    const held = (await listHeld(db.pool, mod.id)).find((h) => h.message_id === 'held-2@example.org')!;
    await moderate(db.pool, held.id, 'discard', { actor: 'mod-a@example.org', settings: config() });
    await settle();
    expect(copiesOf('held-2@example.org')).toHaveLength(0);
    expect(await archived('held-2@example.org')).toBe(false);
    expect(await getHeld(db.pool, held.id)).toMatchObject({ state: 'discarded', decided_by: 'mod-a@example.org' });
  });

  it('tells the sender of a rejected post why', async () => {
    const held = (await listHeld(db.pool, mod.id)).find((h) => h.message_id === 'held-3@example.org')!;
    await moderate(db.pool, held.id, 'reject', { actor: 'mod-a@example.org', reason: 'Off topic for this list', settings: config() });
    await settle();
    const [notice] = relay.to('stranger@elsewhere.example');
    const parsed = await parse(notice.raw);
    expect(parsed.subject).toBe('Your message to mod@lists.example.org was rejected');
    expect(parsed.text).toContain('Reason: Off topic for this list');
    expect(parsed.inReplyTo).toBe('held-3@example.org');
    expect(copiesOf('held-3@example.org')).toHaveLength(0);
    expect(await getHeld(db.pool, held.id)).toMatchObject({ state: 'rejected', decision_reason: 'Off topic for this list' });
  });

  it('accepts an allowlisted sender without moderation and drops a banned one', async () => {
    await addSenderRule(db.pool, mod, 'friend@elsewhere.example', 'allow', { actor: 'owner@example.org' });
    await addSenderRule(db.pool, mod, '@spam.example', 'ban', { actor: 'owner@example.org', expiresAt: new Date(Date.now() + 86_400_000) });
    await postTo('mod', 'friend-1@example.org', { from: 'friend@elsewhere.example' });
    await postTo('mod', 'spam-1@example.org', { from: 'bot@spam.example' });
    await settle();
    expect(copiesOf('friend-1@example.org')).toHaveLength(2);
    expect(copiesOf('spam-1@example.org')).toHaveLength(0);
    const { rows } = await db.pool.query(`select state, rule, decided_by from held_messages where message_id = 'spam-1@example.org'`);
    expect(rows).toEqual([{ state: 'discarded', rule: 'banned', decided_by: 'rule:banned' }]);
  });

  it('drops our own copy when it comes back to the list', async () => {
    const res = await postTo('team', 'looped@example.org', { from: 'ann@x.example', headers: { 'List-Id': '<team.lists.example.org>' } });
    expect(res.ok).toBe(true);
    expect(await archived('looped@example.org')).toBe(false);
    const { rows } = await db.pool.query(`select state, rule from held_messages where message_id = 'looped@example.org'`);
    expect(rows).toEqual([{ state: 'discarded', rule: 'loop' }]);
  });
});

describe('command line', () => {
  const env = () => ({ DATABASE_URL: db.url, MAIL_DOMAIN: 'lists.example.org' });

  it('lists held messages as JSON with the fields of DESIGN §4', async () => {
    const res = await cli(['held', 'mod', '--json'], env());
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    const rows = JSON.parse(res.stdout);
    expect(rows.length).toBeGreaterThanOrEqual(3);
    for (const r of rows) expect(Object.keys(r).sort()).toEqual(['from', 'id', 'message_id', 'reason', 'received_at', 'subject']);
    expect(rows[0]).toMatchObject({ message_id: 'held-4@example.org', from: 'stranger@elsewhere.example', subject: 'Post held-4@example.org' });
    expect(new Date(rows[0].received_at).toString()).not.toBe('Invalid Date');
  });

  it('approves by id from the command line and refuses a second decision', async () => {
    const [first] = JSON.parse((await cli(['held', 'mod', '--json'], env())).stdout);
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
    const [next] = (await listHeld(db.pool, mod.id)).map((h) => ({ id: h.id, message_id: h.message_id, from: h.from, subject: h.subject }));
    const r = await cli(['moderate', String(next.id), 'reject', '--reason', 'Off topic'], env());
    expect(r.code).toBe(0);
    const refused = await cli(['moderate', String(next.id), 'approve'], env());
    expect(refused.code).not.toBe(0);
    const { rows } = await db.pool.query(`select actor, action, list_address, target, detail from audit_log where target = $1`, [next.message_id]);
    // The refused second decision left nothing behind.
    expect(rows).toEqual([{
      actor: `cli:${os.userInfo().username}`, action: 'held.reject', list_address: 'mod@lists.example.org', target: next.message_id,
      detail: { id: next.id, from: next.from, subject: next.subject, reason: 'Off topic' },
    }]);
    expect((await db.pool.query(`select state, decided_by from held_messages where id = $1`, [next.id])).rows).toEqual([{ state: 'rejected', decided_by: `cli:${os.userInfo().username}` }]);
  });

  it('rejects an unknown action and an unknown id with a clear message', async () => {
    expect((await cli(['moderate', '1', 'bless'], env())).stderr).toMatch(/approve, reject, discard/);
    const missing = await cli(['moderate', '999999', 'approve'], env());
    expect(missing.code).toBe(3);
    expect(missing.stderr).toMatch(/no held message 999999/);
  });

  it('shows the queue as JSON: counts by state, the oldest waiting row, the workers', async () => {
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
