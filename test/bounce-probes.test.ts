/*
 * What follows a bounce score that reaches the threshold (docs/delivery.md#bounces): a probe with
 * its own VERP address, the disable when (and only when) the probe bounces, the warnings D days
 * apart, and the removal after the last one. Real DSN samples arrive over SMTP at the addresses
 * the relay saw; the delivery worker runs its maintenance all along, and the days are passed by
 * back-dating rows.
 */

import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBounceChores } from '../src/core/bounce-warnings.ts';
import { parseListSettings } from '../src/core/list-settings.ts';
import { memberBounces } from '../src/db/bounces.ts';
import { createList, type ListRow } from '../src/db/lists.ts';
import { addMember, findMember, type MemberRow } from '../src/db/members.ts';
import type { DeliveryWorker } from '../src/delivery/worker.ts';
import { log } from '../src/log.ts';
import { parse } from '../src/mail/parse.ts';
import { drained, startCaptureRelay, startWorker, workerConfig, type Captured, type CaptureRelay } from './helpers/capture-relay.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';

let db: TestDatabase;
let relay: CaptureRelay;
let smtp: RunningIngest;
let worker: DeliveryWorker;
let dev: ListRow;
const PUBLIC_URL = 'https://lists.example.org';

const fixture = (name: string) => fs.readFileSync(path.join(import.meta.dirname, 'fixtures/bounces', name));
const member = async (email: string) => (await findMember(db.pool, dev.id, email))!;

/** Sends a real DSN sample to an address, as the member's MTA would. */
async function dsnTo(address: string, sample: string) {
  const res = await sendRaw(smtp.port, { from: '', to: [address] }, fixture(sample));
  expect(res.ok, res.response).toBe(true);
}

/**
 * Three hard bounces to the member's own VERP address, a day apart (a member is scored once a day):
 * the score reaches the threshold (3). The days pass for the bounces' dates only, so the score does
 * not decay.
 */
async function bounceToThreshold(email: string): Promise<MemberRow> {
  const m = await member(email);
  for (const sample of ['postfix-user-unknown.eml', 'gmail-no-such-user.eml', 'exchange-recipient-not-found.eml']) {
    await db.pool.query(`update bounces set received_at = received_at - interval '1 day' where member_id = $1`, [m.id]);
    await dsnTo(`dev-bounces+${m.token}@lists.example.org`, sample);
  }
  return member(email);
}

/** The mails the relay got for `to` whose Subject contains `subject`, once there are `n` of them. */
async function mailsTo(to: string, subject: string, n = 1): Promise<(Captured & { subject: string; text: string })[]> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const found = [];
    for (const m of relay.to(to)) {
      const p = await parse(m.raw);
      if (p.subject.includes(subject)) found.push({ ...m, subject: p.subject, text: p.text });
    }
    if (found.length >= n || Date.now() > deadline) return found;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Lets `days` pass for a disabled member's last warning (and a minute more). */
async function daysPassSinceWarning(email: string, days: number) {
  await db.pool.query(`update members set bounce_warned_at = bounce_warned_at - make_interval(days => $3, mins => 1) where list_id = $1 and email = $2`, [dev.id, email, days]);
}

/**
 * Runs the bounce chores until what `read` gives satisfies `done`, for up to 10 s, and returns the
 * last reading. The test's live delivery worker runs the same chores on its own timer and claims
 * members with SKIP LOCKED: a pass of ours that meets its lock leaves that member to the next
 * pass, and whichever pass then takes it does the work once (seen in CI).
 */
async function choresUntil<T>(read: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    await runBounceChores(db.pool, PUBLIC_URL, log);
    const value = await read();
    if (done(value) || Date.now() > deadline) return value;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Notices queued to `to` whose Subject contains `subject` (the outbox, whether sent yet or not). */
async function queuedNotices(to: string, subject: string): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(
    `select count(*)::int as n from outbox o join outbound_mail m on m.id = o.mail_id
      where o.kind = 'notice' and o.recipient = $1 and position($2 in convert_from(m.raw, 'UTF8')) > 0`,
    [to, subject],
  );
  return rows[0].n;
}

beforeAll(async () => {
  db = await testDatabase();
  relay = await startCaptureRelay();
  smtp = await startIngest(db.pool);
  dev = await createList(db.pool, { address: 'dev@lists.example.org', name: 'dev', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: ['owner@example.org'] });
  for (const e of ['ann@example.net', 'bea@example.net', 'cid@example.net', 'dan@example.net']) await addMember(db.pool, dev.id, e, 'each');
  worker = await startWorker(db, workerConfig(relay));
});

afterAll(async () => {
  await worker?.stop();
  await smtp?.stop();
  await relay?.stop();
  await db?.drop();
});

describe('bounce probes', () => {
  it('sends a probe from an address of its own when the score reaches the threshold, and does not disable', async () => {
    const ann = await bounceToThreshold('ann@example.net');
    expect(ann.status).toBe('active');
    expect(ann.bounce_score).toBeCloseTo(3, 3);
    expect(ann.bounce_probe_token).toMatch(/^probe-[a-f0-9]{32}$/);
    const [probe] = await mailsTo('ann@example.net', 'probe message');
    expect(probe.subject).toBe('dev mailing list probe message');
    expect(probe.from).toBe(`dev-bounces+${ann.bounce_probe_token}@lists.example.org`);
    expect(probe.text).toContain('You can ignore it');
    expect(probe.text).toContain('RESOLVER.ADR.RecipientNotFound'); // the last bounce's diagnostic
    expect(probe.raw.toString()).toMatch(/^Auto-Submitted: auto-generated/im);
    // One probe at a time: a fourth bounce, the next day, raises the score but sends no second probe.
    await db.pool.query(`update bounces set received_at = received_at - interval '1 day' where member_id = $1`, [ann.id]);
    await dsnTo(`dev-bounces+${ann.token}@lists.example.org`, 'postfix-user-unknown.eml');
    expect((await member('ann@example.net')).bounce_probe_token).toBe(ann.bounce_probe_token);
    expect(await queuedNotices('ann@example.net', 'probe message')).toBe(1);
  });

  it('disables the member when the probe bounces, and tells the member and the owners why', async () => {
    const before = await member('ann@example.net');
    await dsnTo(`dev-bounces+${before.bounce_probe_token}@lists.example.org`, 'gmail-no-such-user.eml');
    const ann = await member('ann@example.net');
    expect(ann).toMatchObject({ status: 'disabled', bounce_probe_token: null, bounce_warnings_sent: 1 });
    expect(ann.disabled_reason).toBe('probe bounced (no_such_user 5.1.1)');
    const [told] = await mailsTo('ann@example.net', 'is disabled');
    expect(told.subject).toBe('Your delivery from dev@lists.example.org is disabled');
    expect(told.text).toContain(`/u/${ann.token}`);
    expect(told.text).toContain('reminder 1 of 3');
    const [owners] = await mailsTo('owner@example.org', 'disabled by bounces');
    expect(owners.subject).toBe("ann@example.net's delivery from dev@lists.example.org disabled by bounces");
    expect(owners.text).toContain('probe bounced (no_such_user 5.1.1)');
    expect(owners.text).toContain('The email account that you tried to reach does not exist');
    const [b] = await memberBounces(db.pool, ann.id);
    expect(b).toMatchObject({ probe: true, counted: true, kind: 'hard', status: '5.1.1' });
  });

  it('disables the member when the probe is refused with a 5xx while it is sent', async () => {
    relay.setRule((a) => (a === 'bea@example.net' ? { code: 550, message: '5.1.1 <bea@example.net>: Recipient address rejected: User unknown' } : null));
    try {
      const probed = await bounceToThreshold('bea@example.net');
      // The worker may send the probe, and take its refusal, before this read: the member then waits
      // on a probe or is already disabled by it (the bounce record below says which it was).
      expect(probed.bounce_probe_token ?? probed.status).toMatch(/^(probe-[a-f0-9]{32}|disabled)$/);
      const deadline = Date.now() + 10_000;
      while ((await member('bea@example.net')).status !== 'disabled' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const bea = await member('bea@example.net');
      expect(bea.status).toBe('disabled');
      expect(bea.disabled_reason).toBe('probe bounced (no_such_user 5.1.1)');
      const [b] = await memberBounces(db.pool, bea.id);
      expect(b).toMatchObject({ probe: true, counted: true, source: 'smtp' });
      expect((await mailsTo('owner@example.org', "bea@example.net's delivery")).length).toBe(1);
    } finally {
      relay.setRule(null);
    }
  });

  it('lets an unbounced probe expire: the member stays active and the score is cleared', async () => {
    const probed = await bounceToThreshold('cid@example.net');
    expect(probed.bounce_probe_token).toMatch(/^probe-/);
    await mailsTo('cid@example.net', 'probe message');
    // Five days on, the probe still waits for its bounce.
    await db.pool.query(`update members set bounce_probe_sent_at = now() - interval '5 days' where id = $1`, [probed.id]);
    await runBounceChores(db.pool, PUBLIC_URL, log);
    expect((await member('cid@example.net')).bounce_probe_token).toBe(probed.bounce_probe_token);
    // Past six days it has expired.
    await db.pool.query(`update members set bounce_probe_sent_at = now() - interval '6 days 1 minute' where id = $1`, [probed.id]);
    const cid = await choresUntil(() => member('cid@example.net'), (m) => m.bounce_probe_token === null);
    expect(cid).toMatchObject({ status: 'active', bounce_score: 0, bounce_probe_token: null, bounce_probe_sent_at: null });
    // A bounce of the expired probe that comes late names nobody and disables nobody.
    await dsnTo(`dev-bounces+${probed.bounce_probe_token}@lists.example.org`, 'postfix-user-unknown.eml');
    expect((await member('cid@example.net')).status).toBe('active');
    const { rows } = await db.pool.query(`select member_id, counted from bounces where probe and member_id is null`);
    expect(rows).toEqual([{ member_id: null, counted: false }]);
  });
});

describe('the settings', () => {
  it('are set by name, with Mailman\'s defaults (3 warnings, 7 days apart)', () => {
    expect(dev).toMatchObject({ bounce_warnings: 3, bounce_warning_interval_days: 7 });
    expect(parseListSettings([['bounce_warnings', '0'], ['bounce_warning_interval_days', '14']])).toEqual({ bounce_warnings: 0, bounce_warning_interval_days: 14 });
    expect(() => parseListSettings([['bounce_warning_interval_days', '0']])).toThrow('bounce_warning_interval_days: must be a whole number from 1 to 365');
  });
});

describe('warnings and removal of a disabled member', () => {
  it('warns again only after bounce_warning_interval_days, up to bounce_warnings, then removes the member and tells the owners', async () => {
    await drained(db);
    // Warning 1 was the disable notice. Six days on, nothing is due.
    await daysPassSinceWarning('ann@example.net', 6);
    await runBounceChores(db.pool, PUBLIC_URL, log);
    expect((await member('ann@example.net')).bounce_warnings_sent).toBe(1);
    // A seventh day: warning 2, once, however often maintenance runs.
    await daysPassSinceWarning('ann@example.net', 1);
    await runBounceChores(db.pool, PUBLIC_URL, log);
    expect((await choresUntil(() => member('ann@example.net'), (m) => m.bounce_warnings_sent >= 2)).bounce_warnings_sent).toBe(2);
    const [second] = await mailsTo('ann@example.net', 'is disabled', 2).then((m) => m.slice(1));
    expect(second.text).toContain('reminder 2 of 3');
    expect(second.text).toContain('still turned off');
    expect(second.text).toContain(`${PUBLIC_URL}/u/`);
    await daysPassSinceWarning('ann@example.net', 7);
    await runBounceChores(db.pool, PUBLIC_URL, log);
    expect((await mailsTo('ann@example.net', 'is disabled', 3)).map((m) => /reminder (\d) of 3/.exec(m.text)?.[1])).toEqual(['1', '2', '3']);
    // The last warning has its interval too before the member goes.
    expect((await member('ann@example.net')).status).toBe('disabled');
    await daysPassSinceWarning('ann@example.net', 7);
    const ann = await choresUntil(() => member('ann@example.net'), (m) => m.status === 'unsubscribed');
    expect(ann.status).toBe('unsubscribed');
    expect(ann.unsubscribed_reason).toBe('bounces: probe bounced (no_such_user 5.1.1)');
    expect((await mailsTo('ann@example.net', 'You have been removed'))[0].subject).toBe('You have been removed from dev@lists.example.org');
    const [owners] = await mailsTo('owner@example.org', 'removed from');
    expect(owners.subject).toBe('ann@example.net removed from dev@lists.example.org after bounces');
    expect(owners.text).toContain('3 reminder(s) went unanswered');
    expect(await queuedNotices('ann@example.net', 'is disabled')).toBe(3);
    expect(await queuedNotices('owner@example.org', 'ann@example.net removed from')).toBe(1);
  });

  it('removes a disabled member at once when the list sends no warnings', async () => {
    await db.pool.query(`update lists set bounce_warnings = 0 where id = $1`, [dev.id]);
    try {
      const probed = await bounceToThreshold('dan@example.net');
      await dsnTo(`dev-bounces+${probed.bounce_probe_token}@lists.example.org`, 'postfix-user-unknown.eml');
      const dan = await choresUntil(() => member('dan@example.net'), (m) => m.status === 'unsubscribed');
      expect(dan.status).toBe('unsubscribed');
      expect(dan.bounce_warnings_sent).toBe(0);
      expect((await mailsTo('owner@example.org', 'dan@example.net removed from')).length).toBe(1);
    } finally {
      await db.pool.query(`update lists set bounce_warnings = 3 where id = $1`, [dev.id]);
    }
  });

  it('sends each warning and each removal once when several workers run maintenance at the same time', async () => {
    const emails = Array.from({ length: 30 }, (_, i) => `many${i}@example.com`);
    for (const e of emails) await addMember(db.pool, dev.id, e, 'each');
    // Half are due for their second warning, half for removal after their third.
    await db.pool.query(
      `update members set status = 'disabled', disabled_at = now() - interval '30 days', disabled_reason = 'probe bounced (no_such_user 5.1.1)',
              bounce_warnings_sent = case when email ~ '[02468]@' then 1 else 3 end, bounce_warned_at = now() - interval '8 days'
        where list_id = $1 and email like 'many%'`,
      [dev.id],
    );
    // Three passes at once, besides the worker's own.
    await Promise.all([1, 2, 3].map(() => runBounceChores(db.pool, PUBLIC_URL, log)));
    const due = (r: { email: string; status: string; bounce_warnings_sent: number }) =>
      (/[02468]@/.test(r.email) ? r.bounce_warnings_sent < 2 : r.status !== 'unsubscribed');
    const rows = await choresUntil(async () => (await db.pool.query<{ email: string; status: string; bounce_warnings_sent: number }>(
      `select email, status, bounce_warnings_sent from members where list_id = $1 and email like 'many%' order by email`, [dev.id])).rows, (rs) => !rs.some(due));
    for (const r of rows) {
      const even = /[02468]@/.test(r.email);
      expect(r, r.email).toMatchObject(even ? { status: 'disabled', bounce_warnings_sent: 2 } : { status: 'unsubscribed', bounce_warnings_sent: 3 });
      expect(await queuedNotices(r.email, even ? 'is disabled' : 'You have been removed'), r.email).toBe(1);
    }
    const { rows: owners } = await db.pool.query<{ n: number }>(
      `select count(*)::int as n from outbox o join outbound_mail m on m.id = o.mail_id
        where o.recipient = 'owner@example.org' and convert_from(m.raw, 'UTF8') ~ 'many[0-9]+@example.com removed from'`);
    expect(owners[0].n).toBe(15);
  });
});
