import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decayBounceScores, memberBounces, raiseBounceScore } from '../src/db/bounces.ts';
import { STRAY_BOUNCES_PER_HOUR } from '../src/core/bounces.ts';
import { sendProbe } from '../src/core/bounce-notices.ts';
import { queuedMail } from './helpers/browser.ts';
import { createList, type ListRow } from '../src/db/lists.ts';
import { addMember, findMember } from '../src/db/members.ts';
import { deliveryHistory } from '../src/db/outbox.ts';
import type { DeliveryWorker } from '../src/delivery/worker.ts';
import { parse } from '../src/mail/parse.ts';
import { drained, startCaptureRelay, startWorker, workerConfig, type CaptureRelay } from './helpers/capture-relay.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';

let db: TestDatabase;
let relay: CaptureRelay;
let smtp: RunningIngest;
let worker: DeliveryWorker;
let dev: ListRow;

const fixture = (name: string) => fs.readFileSync(path.join(import.meta.dirname, 'fixtures/bounces', name));

/** Sends a real DSN sample to a member's VERP address, as the remote MTA would. */
async function bounce(email: string, sample: string) {
  const member = await findMember(db.pool, dev.id, email);
  const res = await sendRaw(smtp.port, { from: '', to: [`dev-bounces+${member!.token}@lists.example.org`] }, fixture(sample));
  expect(res.ok, res.response).toBe(true);
  return (await findMember(db.pool, dev.id, email))!;
}

/** Lets a day pass for a member's bounces: the next one counts again (one a day, as in Mailman). */
async function aDayPasses(email: string) {
  await db.pool.query(`update bounces set received_at = received_at - interval '1 day' where member_id = (select id from members where list_id = $1 and email = $2)`, [dev.id, email]);
}

/** The first message the relay got for `to` whose Subject contains `subject` (waits for it). */
async function mailTo(to: string, subject: string) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    for (const m of relay.to(to)) if ((await parse(m.raw)).subject.includes(subject)) return m;
    if (Date.now() > deadline) throw new Error(`no mail to ${to} about "${subject}"`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  db = await testDatabase();
  relay = await startCaptureRelay();
  smtp = await startIngest(db.pool);
  dev = await createList(db.pool, { address: 'dev@lists.example.org', name: 'dev', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  for (const e of ['bob@example.net', 'carol@contoso.example', 'frank@gmail.com', 'erin@example.com', 'grace@example.info', 'vic@example.org']) {
    await addMember(db.pool, dev.id, e, 'each');
  }
  worker = await startWorker(db, workerConfig(relay));
});

afterAll(async () => {
  await worker?.stop();
  await smtp?.stop();
  await relay?.stop();
  await db?.drop();
});

describe('bounces at the VERP address', () => {
  it('raises the score of the member the VERP token names for a Postfix DSN', async () => {
    const bob = await bounce('bob@example.net', 'postfix-user-unknown.eml');
    expect(bob.bounce_score).toBe(1);
    expect(bob.status).toBe('active');
    const [b] = await memberBounces(db.pool, bob.id);
    expect(b).toMatchObject({ source: 'dsn', kind: 'hard', category: 'no_such_user', status: '5.1.1', recipient: 'bob@example.net', counted: true });
    expect(b.diagnostic).toContain('User unknown in local recipient table');
  });

  it('counts an Exchange NDR and a plain-text qmail bounce', async () => {
    expect((await bounce('carol@contoso.example', 'exchange-recipient-not-found.eml')).bounce_score).toBe(1);
    expect((await bounce('grace@example.info', 'qmail-plain-no-mailbox.eml')).bounce_score).toBe(1);
  });

  it('counts a full mailbox as half a bounce', async () => {
    expect((await bounce('erin@example.com', 'exim-mailbox-full.eml')).bounce_score).toBe(0.5);
  });

  it('does not count DMARC or block-list rejections against the member', async () => {
    const frank = await bounce('frank@gmail.com', 'gmail-dmarc-policy.eml');
    expect(frank.bounce_score).toBe(0);
    const again = await bounce('frank@gmail.com', 'postfix-spamhaus-policy.eml');
    expect(again.bounce_score).toBe(0);
    expect((await memberBounces(db.pool, frank.id)).map((b) => [b.kind, b.counted])).toEqual([['policy', false], ['policy', false]]);
  });

  it('ignores delay warnings and out-of-office replies', async () => {
    expect((await bounce('vic@example.org', 'postfix-delayed-warning.eml')).bounce_score).toBe(0);
    expect((await bounce('vic@example.org', 'vacation-auto-reply.eml')).bounce_score).toBe(0);
  });

  it('scores a member once a day: more bounces that day are recorded but not counted, a hard one tops up a soft one', async () => {
    // carol's Exchange NDR was counted in an earlier test, today.
    const carol = await bounce('carol@contoso.example', 'postfix-user-unknown.eml');
    expect(carol.bounce_score).toBeCloseTo(1, 3);
    expect((await memberBounces(db.pool, carol.id)).map((b) => [b.kind, b.counted])).toEqual([['hard', false], ['hard', true]]);
    // erin's full mailbox counted half; her mailbox is gone the same day: topped up to one.
    const erin = await bounce('erin@example.com', 'postfix-user-unknown.eml');
    expect(erin.bounce_score).toBeCloseTo(1, 3);
    expect((await bounce('erin@example.com', 'gmail-no-such-user.eml')).bounce_score).toBeCloseTo(1, 3);
    expect((await memberBounces(db.pool, erin.id)).map((b) => [b.kind, b.counted])).toEqual([['hard', false], ['hard', true], ['soft', true]]);
    await aDayPasses('erin@example.com');
    expect((await bounce('erin@example.com', 'gmail-no-such-user.eml')).bounce_score).toBeCloseTo(2, 2);
    // Bounces arriving together: the second waits for the first and is not counted.
    await Promise.all(['postfix-user-unknown.eml', 'gmail-no-such-user.eml', 'exchange-recipient-not-found.eml'].map((s) => bounce('vic@example.org', s)));
    expect((await findMember(db.pool, dev.id, 'vic@example.org'))!.bounce_score).toBeCloseTo(1, 3);
  });

  it('probes a member at the threshold, and disables them and tells them how to turn delivery back on when the probe bounces', async () => {
    await aDayPasses('bob@example.net');
    await bounce('bob@example.net', 'postfix-user-unknown.eml');
    await aDayPasses('bob@example.net');
    const probed = await bounce('bob@example.net', 'gmail-no-such-user.eml');
    expect(probed.status).toBe('active');
    expect(probed.bounce_score).toBeCloseTo(3, 3);
    expect(probed.bounce_probe_token).toMatch(/^probe-[a-f0-9]{32}$/);
    const probe = await mailTo('bob@example.net', 'probe message');
    expect(probe.from).toBe(`dev-bounces+${probed.bounce_probe_token}@lists.example.org`);
    const res = await sendRaw(smtp.port, { from: '', to: [probe.from] }, fixture('postfix-user-unknown.eml'));
    expect(res.ok, res.response).toBe(true);
    const bob = (await findMember(db.pool, dev.id, 'bob@example.net'))!;
    expect(bob.status).toBe('disabled');
    expect(bob.disabled_reason).toContain('no_such_user');
    const notice = await parse((await mailTo('bob@example.net', 'is disabled')).raw);
    expect(notice.subject).toBe('Your delivery from dev@lists.example.org is disabled');
    expect(notice.text).toContain(`/u/${bob.token}`);
    expect(notice.text).toContain('Re-enable delivery');
  });

  it('sends no more posts to a disabled member', async () => {
    relay.clear();
    const res = await sendRaw(smtp.port, { from: 'alice@example.org', to: ['dev@lists.example.org'] }, 'From: alice@example.org\r\nSubject: after\r\nMessage-ID: <after-disable@example.org>\r\n\r\nhi\r\n');
    expect(res.ok).toBe(true);
    await relay.waitFor(5);
    await drained(db);
    expect(relay.to('bob@example.net')).toHaveLength(0);
    expect(relay.to('carol@contoso.example')).toHaveLength(1);
  });

  it('records mail to the bounce address of a notice without scoring anyone', async () => {
    const res = await sendRaw(smtp.port, { from: '', to: ['dev-bounces+notice@lists.example.org'] }, fixture('postfix-user-unknown.eml'));
    expect(res.ok).toBe(true);
    const { rows } = await db.pool.query(`select member_id, counted from bounces where member_id is null`);
    expect(rows).toEqual([{ member_id: null, counted: false }]);
  });

  it('records reports for no member up to an hourly limit, and still counts a member\'s bounce past it', async () => {
    const stray = async (to: string) => {
      const res = await sendRaw(smtp.port, { from: '', to: [to] }, fixture('postfix-user-unknown.eml'));
      expect(res.ok, res.response).toBe(true);
    };
    const strayRows = async () => Number((await db.pool.query(`select count(*) from bounces where member_id is null`)).rows[0].count);
    const before = await strayRows();
    // A stranger's flood has all but used the hour's allowance.
    await db.pool.query(`insert into rate_limits (key, window_start, hits) values ($1, now(), $2)
                         on conflict (key) do update set window_start = now(), hits = $2`, [`stray-bounce:list:${dev.id}`, STRAY_BOUNCES_PER_HOUR - 1]);
    await stray('dev-bounces+0123456789abcdef0123456789abcdef@lists.example.org');
    expect(await strayRows()).toBe(before + 1);
    await stray('dev-bounces+notice@lists.example.org');
    await stray('dev-bounces+fedcba9876543210fedcba9876543210@lists.example.org');
    expect(await strayRows()).toBe(before + 1);
    // Past the limit too, a report with a member's token is what scoring is for.
    await addMember(db.pool, dev.id, 'hal@example.org', 'each');
    expect((await bounce('hal@example.org', 'postfix-user-unknown.eml')).bounce_score).toBe(1);
  });

  it('quotes a bounce\'s diagnostic in notices on one line, without controls or bidirectional overrides', async () => {
    await addMember(db.pool, dev.id, 'ivo@example.org', 'each');
    const ivo = (await findMember(db.pool, dev.id, 'ivo@example.org'))!;
    // Whoever sends the DSN writes its Diagnostic-Code: a right-to-left override would show the
    // rest of the line reversed, a NEL (a C1 control) breaks the line in some readers.
    await sendProbe(db.pool, dev, ivo, 'probe-0123456789abcdef0123456789abcdef', 'smtp; 550 5.1.1 gone\u202e moc.knab.www\u0085Click here');
    const [probe] = (await queuedMail(db, 'ivo@example.org')).filter((m) => m.subject.includes('probe message'));
    const said = probe.text.split('\n').find((l) => l.includes('550 5.1.1'))!;
    expect(said).toBe('    smtp; 550 5.1.1 gone moc.knab.www Click here');
  });

  it('lets scores decay over time', async () => {
    await db.pool.query(`update members set bounce_updated_at = now() - interval '14 days' where email = 'carol@contoso.example'`);
    await decayBounceScores(db.pool, 7);
    expect((await findMember(db.pool, dev.id, 'carol@contoso.example'))!.bounce_score).toBeCloseTo(0.25, 2);
  });

  it('keeps a bounce counted while the hourly decay runs (another worker\'s chore)', async () => {
    await addMember(db.pool, dev.id, 'dave@contoso.example', 'each');
    const dave = (await findMember(db.pool, dev.id, 'dave@contoso.example'))!;
    await db.pool.query(`update members set bounce_score = 1, bounce_updated_at = now() - interval '14 days' where id = $1`, [dave.id]);
    // A bounce is being counted (its transaction holds the row) when the decay reads the scores.
    const bounce = await db.pool.connect();
    try {
      await bounce.query('begin');
      await raiseBounceScore(bounce, dave.id, 1, 7);
      const decay = decayBounceScores(db.pool, 7);
      const waiting = async () => (await db.pool.query(`select 1 from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and query like '%bounce_score%'`)).rowCount;
      for (let i = 0; i < 100 && !(await waiting()); i++) await new Promise((r) => setTimeout(r, 20));
      await bounce.query('commit');
      await decay;
    } finally {
      bounce.release();
    }
    // 1 halved twice over 14 days, plus the new bounce: not the decayed score without it.
    expect((await findMember(db.pool, dev.id, 'dave@contoso.example'))!.bounce_score).toBeCloseTo(1.25, 2);
  });

  it('counts bounces per hour for the dashboard', async () => {
    const hours = await deliveryHistory(db.pool, 1);
    expect(hours.reduce((n, h) => n + h.bounced, 0)).toBeGreaterThanOrEqual(8);
    expect(hours.reduce((n, h) => n + h.sent, 0)).toBeGreaterThanOrEqual(5);
  });
});
