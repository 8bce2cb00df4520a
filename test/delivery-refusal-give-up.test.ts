/*
 * A refused copy's follow-up that fails every time (here a trigger that refuses the bounce record of
 * one address, as a constraint or a bug would) was tried by every chores pass for ever, with an
 * error each time, and 500 such rows kept every newer refusal from being recorded (a pass takes
 * 500). Now its tries are counted, rows tried least go first, and after MAX_TRIES passes it is
 * given up once: one error, a row in refusals_given_up, a doctor warning, a count in /metrics.
 */

import { pino } from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { refusalsFinding } from '../src/core/doctor.ts';
import { MAX_TRIES, recordRefusals } from '../src/core/refusals.ts';
import { createList, type ListRow } from '../src/db/lists.ts';
import { addMember, findMember } from '../src/db/members.ts';
import { createPool } from '../src/db/pool.ts';
import { refusalsGivenUp } from '../src/metrics.ts';
import { workerConfig } from './helpers/capture-relay.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let list: ListRow;
let mailId: number;
const cfg = workerConfig({ url: 'smtp://127.0.0.1:1' });
const settings = { publicUrl: 'https://lists.example.org' };
const REFUSAL = '550 5.1.1 <x@example.net>: Recipient address rejected: User unknown';

let lines: { level: number; msg: string; outboxIds?: number[]; err?: { message: string } }[] = [];
const log = pino({ level: 'info' }, { write: (l: string) => void lines.push(JSON.parse(l)) });
const problems = () => lines.filter((l) => l.level >= 40);

beforeAll(async () => {
  db = await testDatabase();
  list = await createList(db.pool, { address: 'dev@lists.example.org', name: 'dev', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: ['owner@example.org'] });
  mailId = (await db.pool.query<{ id: number }>(`insert into outbound_mail (raw) values ('x') returning id`)).rows[0].id;
  // The follow-up that always fails: the bounce record of one address is refused.
  await db.pool.query(`
    create function refuse_poison_bounce() returns trigger language plpgsql as $$
    begin
      if new.recipient = 'poison@example.net' then raise exception 'no bounce may be recorded for %', new.recipient; end if;
      return new;
    end $$;
    create trigger refuse_poison_bounce before insert on bounces for each row execute function refuse_poison_bounce();`);
});

afterAll(async () => {
  await db?.drop();
});

beforeEach(async () => {
  lines = [];
  await db.pool.query(`delete from outbox; delete from bounces; delete from refusals_given_up; delete from members`);
});

/** Members and, for each, a copy failed and marked as refused at RCPT TO, as markFailed leaves it. */
async function refusedCopies(emails: string[]): Promise<number[]> {
  const ids: number[] = [];
  for (const email of emails) {
    const member = (await findMember(db.pool, list.id, email)) ?? (await addMember(db.pool, list.id, email, 'each'), (await findMember(db.pool, list.id, email))!);
    const { rows } = await db.pool.query<{ id: number }>(
      `insert into outbox (kind, list_id, mail_id, member_id, recipient, domain, envelope_from, state, attempts, last_error, bounce_stage)
       values ('digest', $1, $2, $3, $4, 'example.net', 'dev-bounces@lists.example.org', 'failed', 1, $5, 'RCPT TO') returning id`,
      [list.id, mailId, member.id, email, REFUSAL],
    );
    ids.push(rows[0].id);
  }
  return ids;
}

const bouncesOf = async (email: string) => (await db.pool.query<{ n: number }>(`select count(*)::int as n from bounces where recipient = $1`, [email])).rows[0].n;
const rowOf = async (id: number) =>
  (await db.pool.query<{ state: string; last_error: string; bounce_stage: string | null; bounce_tries: number }>(`select state, last_error, bounce_stage, bounce_tries from outbox where id = $1`, [id])).rows[0];
/** The time a retry waits, passed: every row tried is due again. */
const later = () => db.pool.query(`update outbox set bounce_tried_at = bounce_tried_at - interval '1 day' where bounce_tried_at is not null`);
const givenUpCount = async () => (await refusalsGivenUp.get()).values.reduce((n, v) => n + v.value, 0);

describe('a refused copy whose follow-up fails every time', () => {
  it('is given up after MAX_TRIES passes with one error, visible to doctor and /metrics, while the others are recorded', async () => {
    const [poison, ...others] = await refusedCopies(['poison@example.net', 'alice@example.net', 'bob@example.net']);
    const metricBefore = await givenUpCount();

    expect(await recordRefusals(db.pool, settings, log, null)).toBe(2);
    expect(await bouncesOf('alice@example.net')).toBe(1);
    expect(await bouncesOf('bob@example.net')).toBe(1);
    for (const id of others) expect((await rowOf(id)).bounce_stage).toBeNull();
    expect(await rowOf(poison)).toMatchObject({ bounce_stage: 'RCPT TO', bounce_tries: 1 });
    // The first failure is a warning; no error yet.
    expect(problems().map((l) => l.level)).toEqual([40]);

    // Not due again at once: the next pass does not try it.
    await recordRefusals(db.pool, settings, log, null);
    expect((await rowOf(poison)).bounce_tries).toBe(1);

    for (let pass = 2; pass <= MAX_TRIES; pass++) {
      await later();
      expect(await recordRefusals(db.pool, settings, log, null)).toBe(0);
      expect((await rowOf(poison)).bounce_tries).toBe(pass);
    }
    const errors = problems().filter((l) => l.level >= 50);
    expect(errors).toHaveLength(1);
    expect(errors[0].msg).toMatch(/given up/);
    expect(errors[0].outboxIds).toEqual([poison]);
    expect(errors[0].err?.message).toMatch(/no bounce may be recorded for poison@example.net/);
    // The mark is cleared; the copy's own result is as it was.
    expect(await rowOf(poison)).toEqual({ state: 'failed', last_error: REFUSAL, bounce_stage: null, bounce_tries: MAX_TRIES });
    expect(await bouncesOf('poison@example.net')).toBe(0);
    const { rows: given } = await db.pool.query(`select outbox_id, recipient, stage, follow_up, error, tries from refusals_given_up`);
    expect(given).toEqual([{ outbox_id: poison, recipient: 'poison@example.net', stage: 'RCPT TO', follow_up: 'bounce', error: 'no bounce may be recorded for poison@example.net', tries: MAX_TRIES }]);
    expect(await givenUpCount()).toBe(metricBefore + 1);
    const finding = await refusalsFinding(db.pool, cfg);
    expect(finding.status).toBe('warn');
    expect(finding.what).toMatch(/^1 follow-up\(s\) of refused copies .* given up .*outbox #\d+ to poison@example.net \(bounce\).*after 5 tries: no bounce may be recorded for poison@example.net$/);

    // No later pass takes it, nor logs it again.
    const logged = lines.length;
    for (let pass = 0; pass < 3; pass++) {
      await later();
      expect(await recordRefusals(db.pool, settings, log, null)).toBe(0);
    }
    expect(lines.slice(logged)).toEqual([]);
    expect((await rowOf(poison)).bounce_tries).toBe(MAX_TRIES);
  });

  it('does not keep a newer refusal from being recorded when a whole pass of rows fails every time', async () => {
    const poisoned = await refusedCopies(Array.from({ length: 500 }, () => 'poison@example.net'));
    const [carol] = await refusedCopies(['carol@example.net']);
    // The first pass takes the 500 oldest (all poisoned); the next takes the rows not tried yet.
    await recordRefusals(db.pool, settings, log, null);
    await recordRefusals(db.pool, settings, log, null);
    expect(await bouncesOf('carol@example.net')).toBe(1);
    expect((await rowOf(carol)).bounce_stage).toBeNull();
    expect((await rowOf(poisoned[0])).bounce_tries).toBe(1);
    // One warning per poisoned row's first failure, no error.
    expect(problems().filter((l) => l.level >= 50)).toEqual([]);
  });

  it('is recorded once its cause is fixed and its mark put back by hand, as docs/delivery.md says', async () => {
    const [poison] = await refusedCopies(['poison@example.net']);
    for (let pass = 1; pass <= MAX_TRIES; pass++) {
      await later();
      await recordRefusals(db.pool, settings, log, null);
    }
    expect((await rowOf(poison)).bounce_stage).toBeNull();
    await db.pool.query(`alter table bounces disable trigger refuse_poison_bounce`);
    try {
      await db.pool.query(`update outbox o set bounce_stage = g.stage, bounce_tries = 0, bounce_tried_at = null from refusals_given_up g where g.outbox_id = o.id`);
      await db.pool.query(`delete from refusals_given_up`);
      expect(await recordRefusals(db.pool, settings, log, null)).toBe(1);
    } finally {
      await db.pool.query(`alter table bounces enable trigger refuse_poison_bounce`);
    }
    expect(await bouncesOf('poison@example.net')).toBe(1);
    expect((await rowOf(poison)).bounce_stage).toBeNull();
  });

  it('is tried again without counting when the failure is transient', async () => {
    const [dave] = await refusedCopies(['dave@example.net']);
    // The member's row locked elsewhere, and lock_timeout short: 55P03, a lock not got in time.
    const holder = await db.pool.connect();
    try {
      await holder.query('begin');
      await holder.query(`select 1 from members where email = 'dave@example.net' for update`);
      const impatient = createPool(db.url, 2, 'test-impatient', { settings: { lock_timeout: `'200ms'` } });
      try {
        for (let i = 0; i < MAX_TRIES + 1; i++) await recordRefusals(impatient, settings, log, null);
      } finally {
        await impatient.end();
      }
    } finally {
      await holder.query('rollback');
      holder.release();
    }
    expect(await rowOf(dave)).toMatchObject({ bounce_stage: 'RCPT TO', bounce_tries: 0 });
    expect(await recordRefusals(db.pool, settings, log, null)).toBe(1);
    expect(await bouncesOf('dave@example.net')).toBe(1);
  });
});
