import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../src/config.ts';
import { listHeld, moderate } from '../src/core/hold.ts';
import { addListRole } from '../src/db/list-admin.ts';
import { createList, updateDeliverySettings } from '../src/db/lists.ts';
import { addMember } from '../src/db/members.ts';
import type { DeliveryWorker } from '../src/delivery/worker.ts';
import { setResolvers } from '../src/dns.ts';
import { parse } from '../src/mail/parse.ts';
import { drained, startCaptureRelay, startWorker, workerConfig, type CaptureRelay } from './helpers/capture-relay.ts';
import { cli } from './helpers/cli.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { SPAMMY_SUBJECT, startRspamd, type RunningRspamd } from './helpers/rspamd.ts';
import { message, sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';
import { LOOPBACK_SPF, stubResolvers, type StubRecords } from './helpers/stub-dns.ts';

/*
 * Held-post notices (issue 13, items 1 and 2), over a real SMTP socket into the ingest listener and
 * a delivery worker sending to a capture relay: the owners and moderators are told, with links;
 * the sender may be told, never for spam, automatic mail or a forgery; and a moderator decides by
 * replying, with the post's token, from their own address. rspamd is the real one (Debian's);
 * DNS is stubbed in the process (a p=reject domain for the forgery).
 */

const records = new Map<string, StubRecords>([
  ['strict.example', { txt: ['v=spf1 ip4:192.0.2.0/24 -all'] }],
  ['_dmarc.strict.example', { txt: ['v=DMARC1; p=reject'] }],
  ['weak.example', { txt: ['v=spf1 -all'] }],
]);

let db: TestDatabase;
let relay: CaptureRelay;
let smtp: RunningIngest;
let worker: DeliveryWorker;
let rspamd: RunningRspamd;
let settings: Config;

const MEMBERS = ['ann@x.example', 'ben@y.example'];
const STRANGER = 'stranger@elsewhere.example';
const PUBLIC = 'https://lists.example.org';

let lists = 0;
/** A list of its own for each test: an owner, a moderator, two members. */
async function newList(postPolicy: 'members' | 'moderated' = 'moderated') {
  const local = `held-${++lists}`;
  const address = `${local}@lists.example.org`;
  const owner = `owner-${local}@example.org`;
  const moderator = `mod-${local}@example.org`;
  const list = await createList(db.pool, { address, name: local, description: '', postPolicy, subscribePolicy: 'confirm', archive: 'public', owners: [owner] });
  await addListRole(db.pool, list.id, moderator, 'moderator');
  await updateDeliverySettings(db.pool, list.id, { notify_held_sender: true });
  for (const email of MEMBERS) await addMember(db.pool, list.id, email, 'each');
  return { list, local, address, owner, moderator, id: (n: number | string) => `${local}-${n}@example.org` };
}

async function send(to: string, from: string, opts: { id?: string; subject?: string; body?: string; headers?: Record<string, string> } = {}) {
  const res = await sendRaw(smtp.port, { from, to: [to] }, message({ id: opts.id, from, to, subject: opts.subject ?? 'Hello', body: opts.body, headers: opts.headers }));
  expect(res.ok, res.response).toBe(true);
}

/** Mail the relay took for an address, once at least `n` have come (or after 10 s). */
async function mailTo(address: string, n: number) {
  const deadline = Date.now() + 10_000;
  while (relay.to(address).length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  return Promise.all(relay.to(address).map(async (m) => ({ raw: m.raw.toString(), parsed: await parse(m.raw) })));
}
const settle = async () => {
  await drained(db);
  await new Promise((r) => setTimeout(r, 300));
};
const copiesOf = (messageId: string) => relay.messages.filter((m) => MEMBERS.includes(m.to) && m.raw.toString('latin1').includes(`Message-ID: <${messageId}>`));
const heldState = async (messageId: string) => (await db.pool.query('select id, state, decided_by, decision_reason, rule from held_messages where message_id = $1', [messageId])).rows[0];
const awaitsNotices = (to: string) => relay.to(to).filter((m) => m.raw.toString().includes('awaits moderator approval'));
const replyAddress = (raw: string) => /^Reply-To: (\S+-confirm\+mod-[a-f0-9]{32}@lists\.example\.org)\r?$/m.exec(raw)?.[1] ?? null;

/** A post held on a list of its own, with the moderators' notice and its reply address. */
async function heldPost(subject = 'Please let me in') {
  const l = await newList();
  const messageId = l.id(1);
  await send(l.address, STRANGER, { id: messageId, subject });
  const [notice] = await mailTo(l.moderator, 1);
  const address = replyAddress(notice.raw);
  expect(address).not.toBeNull();
  return { ...l, messageId, notice, replyTo: address! };
}

beforeAll(async () => {
  setResolvers(stubResolvers(records, { defaultSpf: LOOPBACK_SPF }));
  db = await testDatabase();
  relay = await startCaptureRelay();
  rspamd = await startRspamd();
  settings = { ...workerConfig(relay), spamCheck: { url: rspamd.url, fail: 'accept', timeoutMs: 10_000 }, authCheckTimeoutMs: 1500 };
  smtp = await startIngest(db.pool, { settings });
  worker = await startWorker(db, workerConfig(relay));
}, 60_000);

afterAll(async () => {
  setResolvers();
  await worker?.stop();
  await smtp?.stop();
  await rspamd?.stop();
  await relay?.stop();
  await db?.drop();
});

describe('the held notice', () => {
  it('goes to the owners and the moderators, with links to the queue and to the post, and a reply address', async () => {
    const { list, local, owner, moderator, address, id } = await newList();
    await send(address, STRANGER, { id: id(1), subject: 'Please let me in' });
    const [held] = await listHeld(db.pool, list.id);
    for (const to of [owner, moderator]) {
      const notices = await mailTo(to, 1);
      expect(notices).toHaveLength(1);
      const { parsed, raw } = notices[0];
      expect(parsed.subject).toBe(`1 post held for moderation on ${address}`);
      expect(parsed.text).toContain(`${STRANGER}: Please let me in`);
      expect(parsed.text).toContain(`The moderation queue: ${PUBLIC}/admin/lists/${address}/held\n`);
      expect(parsed.text).toContain(`${PUBLIC}/admin/lists/${address}/held/${held.id}\n`);
      expect(replyAddress(raw)).toMatch(new RegExp(`^${local}-confirm\\+mod-[a-f0-9]{32}@lists\\.example\\.org$`));
    }
    // The same token for both: it belongs to the post, not to a moderator.
    expect(replyAddress((await mailTo(owner, 1))[0].raw)).toBe(replyAddress((await mailTo(moderator, 1))[0].raw));
  });

  it('does not keep a post waiting while the list\'s digest is being built: its notice follows with the next chores', async () => {
    const { list, address, moderator, id } = await newList();
    // The digest builder holds the list row for its whole transaction (lockListForDigest).
    const digest = await db.pool.connect();
    try {
      await digest.query('begin');
      await digest.query('select 1 from lists where id = $1 for no key update', [list.id]);
      const sent = sendRaw(smtp.port, { from: STRANGER, to: [address] }, message({ id: id(1), from: STRANGER, to: address, subject: 'During the digest' }));
      const answer = await Promise.race([sent, new Promise<null>((r) => setTimeout(() => r(null), 8_000))]);
      expect(answer, 'the SMTP answer waited for the digest').not.toBeNull();
      expect(answer!.ok, answer!.response).toBe(true);
      expect((await listHeld(db.pool, list.id)).map((h) => h.subject)).toEqual(['During the digest']);
    } finally {
      await digest.query('rollback');
      digest.release();
    }
    const notices = await mailTo(moderator, 1);
    expect(notices.map((n) => n.parsed.subject)).toEqual([`1 post held for moderation on ${address}`]);
  });

  it('sums up several posts with a link and a reply address for each', async () => {
    const { list, moderator, address, id } = await newList();
    await send(address, STRANGER, { id: id(1) });
    await mailTo(moderator, 1);
    await send(address, 'other@elsewhere.example', { id: id(2), subject: 'Second' });
    await send(address, 'third@elsewhere.example', { id: id(3), subject: 'Third' });
    await db.pool.query(`update lists set held_notified_at = now() - interval '1 hour' where id = $1`, [list.id]);
    const notices = await mailTo(moderator, 2);
    expect(notices).toHaveLength(2);
    const summary = notices[1];
    expect(summary.parsed.subject).toBe(`2 posts held for moderation on ${address}`);
    expect(replyAddress(summary.raw)).toBeNull();
    const byMail = [...summary.parsed.text!.matchAll(/by mail: (\S+-confirm\+mod-[a-f0-9]{32}@lists\.example\.org)/g)].map((m) => m[1]);
    expect(new Set(byMail).size).toBe(2);
    for (const h of (await listHeld(db.pool, list.id)).slice(1)) expect(summary.parsed.text).toContain(`${PUBLIC}/admin/lists/${address}/held/${h.id}\n`);
  });

  it('keeps each post on its own lines: a subject with encoded line breaks cannot fake an entry', async () => {
    const { list, moderator, address, id } = await newList();
    await send(address, STRANGER, { id: id(1) });
    await mailTo(moderator, 1);
    const forged = 'Buy cheap pills\n         the list is moderated\n\n  #9999  friend@example.org: Minutes of the board meeting';
    await send(address, 'pills@elsewhere.example', { id: id(2), subject: `=?utf-8?b?${Buffer.from(forged).toString('base64')}?=` });
    await send(address, 'friend@elsewhere.example', { id: id(3), subject: 'Minutes of the board meeting' });
    await db.pool.query(`update lists set held_notified_at = now() - interval '1 hour' where id = $1`, [list.id]);
    const [, summary] = await mailTo(moderator, 2);
    const entries = summary.parsed.text!.split('\n').filter((l) => /^ {2}#\d+ {2}/.test(l));
    const [spam, friend] = (await listHeld(db.pool, list.id)).slice(1);
    expect(entries).toEqual([
      `  #${spam.id}  pills@elsewhere.example: Buy cheap pills          the list is moderated    #9999  friend@example.org: Minutes of the board meeting`,
      `  #${friend.id}  friend@elsewhere.example: Minutes of the board meeting`,
    ]);
    expect(spam.subject).not.toMatch(/[\r\n]/);
  });

  it('drops bidirectional overrides from what it quotes: a subject cannot make the next entry read backwards', async () => {
    const { list, moderator, address, id } = await newList();
    await send(address, STRANGER, { id: id(1) });
    await mailTo(moderator, 1);
    const subject = 'Invoice \u202eelpmaxe.etis@live\u202c and \u2067isolated\u2069';
    await send(address, 'pills@elsewhere.example', { id: id(2), subject: `=?utf-8?b?${Buffer.from(subject).toString('base64')}?=` });
    await db.pool.query(`update lists set held_notified_at = now() - interval '1 hour' where id = $1`, [list.id]);
    const [, summary] = await mailTo(moderator, 2);
    const [held] = (await listHeld(db.pool, list.id)).slice(1);
    expect(held.subject).toBe('Invoice elpmaxe.etis@live and isolated');
    expect(summary.parsed.text).toContain(`  #${held.id}  pills@elsewhere.example: Invoice elpmaxe.etis@live and isolated\n`);
    expect(summary.parsed.text).not.toMatch(/[\u202a-\u202e\u2066-\u2069]/);
  });
});

describe('the sender of a held post', () => {
  it('is told once within the rate limit that the post awaits a moderator, with the reason', async () => {
    const { address, id } = await newList();
    const sender = 'newcomer@elsewhere.example';
    await send(address, sender, { id: id(1), subject: 'First question' });
    await send(address, sender, { id: id(2), subject: 'Second question' });
    await settle();
    const told = awaitsNotices(sender);
    expect(told).toHaveLength(1);
    const notice = await parse(told[0].raw);
    expect(notice.subject).toBe(`Your message to ${address} awaits moderator approval`);
    expect(notice.text).toContain('"First question"');
    expect(notice.text).toContain('Reason: the list is moderated');
    expect(notice.headers.get('auto-submitted')?.[0]).toBe('auto-replied');
    expect(notice.headers.get('in-reply-to')?.[0]).toContain(id(1));
  });

  it('is told once an hour per mailbox: posts in the names of its sub-addresses (bob+1@, bob+2@, …) are not told one by one', async () => {
    const { address, id } = await newList();
    for (const n of [1, 2, 3]) await send(address, `flooded+${n}@elsewhere.example`, { id: id(n), subject: `Post ${n}` });
    await settle();
    const told = relay.messages.filter((m) => /^flooded(\+\d+)?@elsewhere\.example$/.test(m.to) && m.raw.toString().includes('awaits moderator approval'));
    expect(told.map((m) => m.to)).toEqual(['flooded+1@elsewhere.example']);
  });

  it('is not told unless the list turns it on (the default is off)', async () => {
    const { list, address, id, moderator } = await newList();
    await db.pool.query('update lists set notify_held_sender = default where id = $1', [list.id]);
    const sender = 'quiet@elsewhere.example';
    await send(address, sender, { id: id(1) });
    expect(await mailTo(moderator, 1)).toHaveLength(1);
    await settle();
    expect(relay.to(sender)).toHaveLength(0);
  });

  it('is a setting by name: list set LIST notify_held_sender=yes|no, shown by list show --json', async () => {
    const { address } = await newList();
    const env = { DATABASE_URL: db.url, MAIL_DOMAIN: 'lists.example.org' };
    expect((await cli(['list', 'set', address, 'notify_held_sender=no'], env)).code).toBe(0);
    expect(JSON.parse((await cli(['list', 'show', address, '--json'], env)).stdout)).toMatchObject({ notify_held_sender: false });
    const bad = await cli(['list', 'set', address, 'notify_held_sender=maybe'], env);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('notify_held_sender: must be yes or no');
  });

  it('is never told for suspected spam, automatic mail or a post that fails authentication', async () => {
    const spam = await newList();
    await updateDeliverySettings(db.pool, spam.list.id, { spam_hold_score: 5 });
    await send(spam.address, 'spammer@elsewhere.example', { id: spam.id(1), subject: `Buy now ${SPAMMY_SUBJECT}` });
    const automatic = await newList();
    await send(automatic.address, 'robot@elsewhere.example', { id: automatic.id(1), subject: 'Out of office', headers: { 'Auto-Submitted': 'auto-replied' } });
    // From a domain whose DMARC says p=reject, sent from a server it does not allow: a forgery.
    const forged = await newList('members');
    await send(forged.address, 'ceo@strict.example', { id: forged.id(1), subject: 'Urgent' });
    expect((await heldState(spam.id(1)))?.rule).toBe('spam');
    expect((await heldState(automatic.id(1)))?.rule).toBe('automatic');
    expect((await heldState(forged.id(1)))?.rule).toBe('authentication');
    // The moderators hear of each; the senders of none.
    for (const l of [spam, automatic, forged]) expect(await mailTo(l.moderator, 1)).toHaveLength(1);
    await settle();
    for (const sender of ['spammer@elsewhere.example', 'robot@elsewhere.example', 'ceo@strict.example']) expect(relay.to(sender)).toHaveLength(0);
    // Nor when a moderator rejects them with a reason: that notice would go to a From that is
    // likely someone else's (backscatter).
    for (const l of [spam, automatic, forged]) {
      const { id } = await heldState(l.id(1));
      await moderate(db.pool, id, 'reject', { actor: 'mod@example.org', reason: 'not for this list', settings });
      expect((await heldState(l.id(1))).state).toBe('rejected');
    }
    await settle();
    for (const sender of ['spammer@elsewhere.example', 'robot@elsewhere.example', 'ceo@strict.example']) expect(relay.to(sender)).toHaveLength(0);
  });
});

describe('the sender of a held post, where the list takes From as it is (auth_policy=accept)', () => {
  it('is not told, nor told of a rejection, when the p=reject From hides among more domains than are checked', async () => {
    const l = await newList();
    // No spam thresholds either (SPAM_CHECK_URL is unset by default): rspamd would hold it as spam.
    await updateDeliverySettings(db.pool, l.list.id, { auth_policy: 'accept', spam_hold_score: null, spam_reject_score: null });
    // Eleven From domains: DMARC gives no verdict (permerror), where for the first alone it fails.
    const from = ['ceo@strict.example', ...Array.from({ length: 10 }, (_, i) => `x@d${i}.example`)].join(', ');
    const res = await sendRaw(smtp.port, { from: 'x@d0.example', to: [l.address] }, message({ id: l.id(1), from, to: l.address, subject: 'Urgent' }));
    expect(res.ok, res.response).toBe(true);
    expect(await heldState(l.id(1))).toMatchObject({ state: 'held', rule: 'moderated' });
    expect(await mailTo(l.moderator, 1)).toHaveLength(1);
    await moderate(db.pool, (await heldState(l.id(1))).id, 'reject', { actor: 'mod@example.org', reason: 'no', settings });
    await settle();
    expect(relay.to('ceo@strict.example')).toHaveLength(0);
  });
});

describe('moderation by mail', () => {
  it('approves a post once on a moderator\'s reply; a second reply does nothing but say so', async () => {
    const { moderator, replyTo, messageId, notice } = await heldPost();
    await send(replyTo, moderator, { subject: `Re: ${notice.parsed.subject}`, body: `approve\n\n> ${notice.parsed.text!.split('\n')[0]}\n` });
    await settle();
    expect(await heldState(messageId)).toMatchObject({ state: 'approved', decided_by: `mail:${moderator}` });
    expect(copiesOf(messageId).map((m) => m.to).sort()).toEqual(MEMBERS);
    const audit = await db.pool.query(`select actor, action from audit_log where target = $1`, [messageId]);
    expect(audit.rows).toEqual([{ actor: `mail:${moderator}`, action: 'held.approve' }]);
    const answers = await mailTo(moderator, 2);
    expect(answers[1].parsed.subject).toMatch(/^Held post approved on /);
    expect(answers[1].parsed.text).toContain('"Please let me in" from stranger@elsewhere.example was approved');

    await send(replyTo, moderator, { subject: 'approve' });
    await settle();
    expect(copiesOf(messageId)).toHaveLength(2);
    expect((await db.pool.query(`select 1 from audit_log where target = $1`, [messageId])).rows).toHaveLength(1);
    const again = await mailTo(moderator, 3);
    expect(again[2].parsed.subject).toMatch(/^Could not approve the held post/);
    expect(again[2].parsed.text).toContain(`already approved by mail:${moderator}`);
  });

  it('of an owner\'s "approve" and a moderator\'s "discard" replied at the same moment, one decides; the other is told, and nothing is half done', async () => {
    const { owner, moderator, replyTo, messageId } = await heldPost();
    const replies = await Promise.all([
      sendRaw(smtp.port, { from: owner, to: [replyTo] }, message({ from: owner, to: replyTo, subject: 'approve' })),
      sendRaw(smtp.port, { from: moderator, to: [replyTo] }, message({ from: moderator, to: replyTo, subject: 'discard' })),
    ]);
    expect(replies.map((r) => r.ok)).toEqual([true, true]);
    await settle();
    const decided = await heldState(messageId);
    const approved = decided.state === 'approved';
    expect(decided).toMatchObject(approved ? { state: 'approved', decided_by: `mail:${owner}` } : { state: 'discarded', decided_by: `mail:${moderator}` });
    // Distributed exactly when approved, once to each member.
    expect(copiesOf(messageId).map((m) => m.to).sort()).toEqual(approved ? MEMBERS : []);
    const audit = await db.pool.query(`select actor, action from audit_log where target = $1`, [messageId]);
    expect(audit.rows).toEqual([approved ? { actor: `mail:${owner}`, action: 'held.approve' } : { actor: `mail:${moderator}`, action: 'held.discard' }]);
    const [winner, loser] = approved ? [owner, moderator] : [moderator, owner];
    expect((await mailTo(winner, 2)).map((m) => m.parsed.subject)).toContainEqual(expect.stringMatching(approved ? /^Held post approved on / : /^Held post discarded on /));
    const told = (await mailTo(loser, 2)).map((m) => m.parsed).find((p) => /^Could not /.test(p.subject));
    expect(told?.text).toContain(`already ${decided.state} by mail:${winner}`);
  });

  it('takes the decision and queues its answer together: a reply whose answer cannot be queued is retried, and then told it was approved', async () => {
    const { moderator, replyTo, messageId } = await heldPost();
    // The answer's insert fails as a dropped connection would (SQLSTATE 08006: worth a retry).
    await db.pool.query(`create function fail_answer() returns trigger language plpgsql as $$
      begin if position('Held post approved'::bytea in new.raw) > 0 then raise exception 'gone' using errcode = '08006'; end if; return new; end $$`);
    await db.pool.query('create trigger fail_answer before insert on outbound_mail for each row execute function fail_answer()');
    try {
      const res = await sendRaw(smtp.port, { from: moderator, to: [replyTo] }, message({ from: moderator, to: replyTo, subject: 'approve' }));
      expect(res.ok).toBe(false);
      expect(res.response).toMatch(/^451/);
      expect(await heldState(messageId)).toMatchObject({ state: 'held', decided_by: null });
    } finally {
      await db.pool.query('drop trigger fail_answer on outbound_mail; drop function fail_answer()');
    }
    // The relay tries again: approved once, and the moderator hears just that.
    await send(replyTo, moderator, { subject: 'approve' });
    await settle();
    expect(await heldState(messageId)).toMatchObject({ state: 'approved', decided_by: `mail:${moderator}` });
    const answers = (await mailTo(moderator, 2)).slice(1);
    expect(answers.map((a) => a.parsed.subject)).toEqual([expect.stringMatching(/^Held post approved on /)]);
  });

  it('does nothing for a reply from someone who does not moderate the list, nor for one without the token, and keeps them', async () => {
    const { local, address, moderator, replyTo, messageId } = await heldPost();
    const eve = 'eve@elsewhere.example';
    await send(replyTo, eve, { subject: 'approve' });
    await send(replyTo, STRANGER, { body: 'approve\n' });
    await send(`${local}-request@lists.example.org`, moderator, { subject: 'approve' });
    await send(`${local}-confirm+mod-${'0'.repeat(32)}@lists.example.org`, moderator, { subject: 'approve' });
    // The moderator's own signed "approve" written to someone else, replayed to the token's address:
    // only the envelope names it.
    const replayed = message({ from: moderator, to: 'users@elsewhere.example', subject: 'approve' });
    expect((await sendRaw(smtp.port, { from: moderator, to: [replyTo] }, replayed)).ok).toBe(true);
    await settle();
    expect(await heldState(messageId)).toMatchObject({ state: 'held', decided_by: null });
    expect(copiesOf(messageId)).toHaveLength(0);
    expect(relay.to(eve)).toHaveLength(0);
    expect(relay.to(moderator)).toHaveLength(1); // the notice, and no answer
    const kept = await db.pool.query<{ reason: string; envelope_from: string }>(
      `select reason, envelope_from from ingest_errors where recipients[1] like $1 order by id`, [`${local}-%`]);
    expect(kept.rows).toEqual([
      { envelope_from: eve, reason: `moderation by mail from ${eve}, who is not an owner or moderator of the list: not acted on` },
      { envelope_from: STRANGER, reason: `moderation by mail from ${STRANGER}, who is not an owner or moderator of the list: not acted on` },
      { envelope_from: moderator, reason: 'a moderation command sent to the -request address, without the token of a held post: not acted on' },
      { envelope_from: moderator, reason: 'moderation by mail: the token names no held post of this list; not acted on' },
      { envelope_from: moderator, reason: 'moderation by mail: To and Cc do not name the held post\'s address (only the envelope does); not acted on' },
    ]);
    expect(address).toContain(local);
  });

  it('acts on a moderator\'s reply even after 11 mail commands in the moderator\'s name within the day (over the limit of 10)', async () => {
    const { local, moderator, replyTo, messageId } = await heldPost();
    // Anyone can write commands with the moderator's address in From; the limit on commands must
    // not reach the decisions, which the held post's token guards.
    for (let i = 0; i < 11; i++) await send(`${local}-request@lists.example.org`, moderator, { subject: 'help' });
    const limited = await db.pool.query(`select 1 from ingest_errors where envelope_from = $1 and reason like 'more than 10 mail commands%'`, [moderator]);
    expect(limited.rows).toHaveLength(1);
    await send(replyTo, moderator, { subject: 'approve' });
    await settle();
    expect(await heldState(messageId)).toMatchObject({ state: 'approved', decided_by: `mail:${moderator}` });
    expect(copiesOf(messageId).map((m) => m.to).sort()).toEqual(MEMBERS);
    expect((await mailTo(moderator, 12)).some((m) => /^Held post approved on /.test(m.parsed.subject))).toBe(true);
  });

  it('does not act on a reply whose From is not proven, unless the list trusts From as it is; a DNS failure asks for a retry', async () => {
    const { list, replyTo, messageId, moderator } = await heldPost();
    // Moderators whose addresses this server cannot send for: a domain whose DMARC says p=reject,
    // and one whose SPF passes no server and which signs nothing.
    for (const m of ['boss@strict.example', 'mod@weak.example']) await addListRole(db.pool, list.id, m, 'moderator');
    await send(replyTo, 'boss@strict.example', { subject: 'approve' });
    await send(replyTo, 'mod@weak.example', { subject: 'approve' });
    await settle();
    expect(await heldState(messageId)).toMatchObject({ state: 'held', decided_by: null });
    const kept = await db.pool.query<{ reason: string }>(`select reason from ingest_errors where recipients[1] = $1 order by id`, [replyTo]);
    expect(kept.rows.map((r) => r.reason)).toEqual([
      'moderation by mail from boss@strict.example: From strict.example fails DMARC (p=reject); not acted on',
      'moderation by mail from mod@weak.example: neither SPF nor DKIM passes for weak.example; not acted on',
    ]);
    expect(relay.to('boss@strict.example')).toHaveLength(0);
    // DNS that fails for now: 451, and the moderator's server tries again later.
    const failing = async () => {
      throw Object.assign(new Error('SERVFAIL'), { code: 'ESERVFAIL' });
    };
    setResolvers({ ...stubResolvers(records, { defaultSpf: LOOPBACK_SPF }), txt: failing, resolve: failing });
    try {
      const res = await sendRaw(smtp.port, { from: moderator, to: [replyTo] }, message({ from: moderator, to: replyTo, subject: 'approve' }));
      expect(res.ok).toBe(false);
      expect(res.response).toMatch(/^451 4\.7\.0 the sender of this reply could not be authenticated for now/);
    } finally {
      setResolvers(stubResolvers(records, { defaultSpf: LOOPBACK_SPF }));
    }
    expect(await heldState(messageId)).toMatchObject({ state: 'held' });
    // A list that trusts From as it is (auth_policy=accept, as for posts) takes the moderator's word.
    await db.pool.query(`update lists set auth_policy = 'accept' where id = $1`, [list.id]);
    await send(replyTo, 'mod@weak.example', { subject: 'approve' });
    await settle();
    expect(await heldState(messageId)).toMatchObject({ state: 'approved', decided_by: 'mail:mod@weak.example' });
  });

  it('rejects with the reason given, and the sender is told it', async () => {
    const { moderator, replyTo, messageId } = await heldPost('Cheap watches');
    await send(replyTo, moderator, { subject: 'Re: 1 post held', body: 'Reject: off topic here, please write to the users list\n\nthanks\n' });
    await settle();
    expect(await heldState(messageId)).toMatchObject({ state: 'rejected', decided_by: `mail:${moderator}`, decision_reason: 'off topic here, please write to the users list' });
    const rejection = (await mailTo(STRANGER, 1)).map((m) => m.parsed).find((m) => /was rejected$/.test(m.subject));
    expect(rejection?.text).toContain('Reason: off topic here, please write to the users list');
    expect(copiesOf(messageId)).toHaveLength(0);
  });

  it('rejects a post whose From is no address a notice can go to, and tells the envelope sender', async () => {
    for (const from of ['"john smith"@elsewhere.example', 'x@[192.0.2.1]', 'x@-bad-.example']) {
      const l = await newList();
      const envelope = `env-${l.local}@elsewhere.example`;
      const res = await sendRaw(smtp.port, { from: envelope, to: [l.address] }, message({ id: l.id(1), from, to: l.address, subject: 'Odd sender' }));
      expect(res.ok, res.response).toBe(true);
      await mailTo(l.moderator, 1);
      const [held] = await listHeld(db.pool, l.list.id);
      await moderate(db.pool, held.id, 'reject', { actor: l.moderator, reason: 'off topic', settings });
      expect(await heldState(l.id(1)), from).toMatchObject({ state: 'rejected' });
      const [told] = await mailTo(envelope, 1);
      expect(told?.parsed.text, from).toContain('Reason: off topic');
    }
  });

  it('reads the decision in a reply whose only text is HTML (multipart/alternative of one HTML part), not in what it quotes', async () => {
    const { moderator, replyTo, messageId } = await heldPost();
    await send(replyTo, moderator, {
      subject: 'RE: held',
      headers: { 'Content-Type': 'multipart/alternative; boundary="alt"' },
      body: '--alt\nContent-Type: text/html; charset=utf-8\n\n<html><body><div>reject off&nbsp;topic</div><blockquote><p>approve</p></blockquote></body></html>\n--alt--\n',
    });
    await settle();
    expect(await heldState(messageId)).toMatchObject({ state: 'rejected', decided_by: `mail:${moderator}`, decision_reason: 'off topic' });
  });

  it('discards on "discard", and a reply with no decision gets a short how-to', async () => {
    const { moderator, replyTo, messageId } = await heldPost();
    await send(replyTo, moderator, { subject: 'Re: held', body: 'On Mon, someone wrote:\n> A post is waiting\n\nI think we should look at this\n' });
    await settle();
    expect(await heldState(messageId)).toMatchObject({ state: 'held' });
    const howTo = await mailTo(moderator, 2);
    expect(howTo[1].parsed.text).toContain('Reply with one of these as the subject or the first line: approve, reject REASON, discard.');
    await send(replyTo, moderator, { body: 'On Mon, someone wrote:\n> A post is waiting\n\ndiscard\n' });
    await settle();
    expect(await heldState(messageId)).toMatchObject({ state: 'discarded', decided_by: `mail:${moderator}` });
  });
});
