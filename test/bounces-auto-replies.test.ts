import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memberBounces } from '../src/db/bounces.ts';
import { createList, type ListRow } from '../src/db/lists.ts';
import { addMember, findMember } from '../src/db/members.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';

/**
 * Only delivery reports cost a member. Out-of-office replies that mention a
 * phone number or a date like 5.1.26 were read as hard bounces, and three of them disabled the
 * member. Real samples in test/fixtures/bounces/, sent over SMTP to the member's VERP address.
 */
let db: TestDatabase;
let smtp: RunningIngest;
let dev: ListRow;

const fixture = (name: string) => fs.readFileSync(path.join(import.meta.dirname, 'fixtures/bounces', name));

async function toVerp(email: string, sample: string, envelopeFrom = '') {
  const member = await findMember(db.pool, dev.id, email);
  const res = await sendRaw(smtp.port, { from: envelopeFrom, to: [`dev-bounces+${member!.token}@lists.example.org`] }, fixture(sample));
  expect(res.ok, res.response).toBe(true);
  return (await findMember(db.pool, dev.id, email))!;
}

beforeAll(async () => {
  db = await testDatabase();
  smtp = await startIngest(db.pool);
  dev = await createList(db.pool, { address: 'dev@lists.example.org', name: 'dev', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  for (const e of ['vic@example.org', 'hank@example.com', 'ivy@example.net', 'jo@contoso.example', 'kim@example.com']) await addMember(db.pool, dev.id, e, 'each');
});

afterAll(async () => {
  await smtp?.stop();
  await db?.drop();
});

describe('automatic replies at the VERP address', () => {
  it('leaves a member active with score 0 after out-of-office replies that mention a phone number or a date like 5.1.26', async () => {
    // Three are enough to disable a member at the default threshold when each counts as hard.
    await toVerp('vic@example.org', 'vacation-with-phone-number.eml');
    await toVerp('vic@example.org', 'out-of-office-date-5.1.26.eml', 'vic@example.org');
    const vic = await toVerp('vic@example.org', 'exchange-oof-auto-generated-5.1.26.eml');
    expect(vic.status).toBe('active');
    expect(vic.bounce_score).toBe(0);
  });

  it('never counts an auto-responder, a helpdesk acknowledgement or a person forwarding a bounce', async () => {
    await toVerp('vic@example.org', 'autoreply-ticket-precedence-auto-reply.eml');
    await toVerp('vic@example.org', 'human-forwarding-a-bounce.eml', 'vic@example.org');
    const vic = await toVerp('vic@example.org', 'vacation-auto-reply.eml');
    expect(vic).toMatchObject({ status: 'active', bounce_score: 0 });
  });

  it('records each of them as not counted, with the reason', async () => {
    const vic = (await findMember(db.pool, dev.id, 'vic@example.org'))!;
    const rows = (await memberBounces(db.pool, vic.id)).reverse();
    expect(rows.map((b) => [b.kind, b.category, b.counted])).toEqual([
      ['unknown', 'auto_reply', false],
      ['unknown', 'not_a_bounce', false],
      ['unknown', 'auto_reply', false],
      ['unknown', 'auto_reply', false],
      ['unknown', 'not_a_bounce', false],
      ['unknown', 'auto_reply', false],
    ]);
    expect(rows[0].diagnostic).toContain('Automatic reply: Release planning');
    expect(rows[1].diagnostic).toContain('neither a delivery status notification');
    expect(rows[3].diagnostic).toContain('Precedence: auto_reply');
  });

  it('takes an auto-reply whose Subject holds a NUL with 250, recording it with a space for the NUL', async () => {
    // PostgreSQL stores no NUL in text: the Subject quoted in the record made the whole message a 554.
    await addMember(db.pool, dev.id, 'nul@example.org', 'each');
    const member = (await findMember(db.pool, dev.id, 'nul@example.org'))!;
    const res = await sendRaw(smtp.port, { from: '', to: [`dev-bounces+${member.token}@lists.example.org`] }, fixture('vacation-subject-with-nul.eml'));
    expect([res.ok, res.response]).toEqual([true, expect.stringMatching(/^250 /)]);
    const [b] = await memberBounces(db.pool, member.id);
    expect(b).toMatchObject({ kind: 'unknown', category: 'auto_reply', counted: false });
    expect(b.diagnostic).toContain('Subject: Out of office: Release planning');
    expect((await findMember(db.pool, dev.id, 'nul@example.org'))!).toMatchObject({ status: 'active', bounce_score: 0 });
    expect((await db.pool.query(`select count(*)::int as n from ingest_errors`)).rows[0].n).toBe(0);
  });
});

describe('plain-text bounce formats besides DSNs', () => {
  it('counts a Sendmail report, an old Postfix report without a status code and a legacy Exchange report', async () => {
    expect(await toVerp('hank@example.com', 'sendmail-plain-user-unknown.eml')).toMatchObject({ bounce_score: 1 });
    expect(await toVerp('ivy@example.net', 'postfix-plain-unknown-user.eml')).toMatchObject({ bounce_score: 1 });
    expect(await toVerp('jo@contoso.example', 'exchange-legacy-plain-no-such-user.eml')).toMatchObject({ bounce_score: 1 });
    const [ivy] = await memberBounces(db.pool, (await findMember(db.pool, dev.id, 'ivy@example.net'))!.id);
    expect(ivy).toMatchObject({ kind: 'hard', category: 'no_such_user', recipient: 'ivy@example.net', counted: true });
  });

  it('does not count a plain Exim delay warning', async () => {
    const kim = await toVerp('kim@example.com', 'exim-plain-delay-warning.eml');
    expect(kim.bounce_score).toBe(0);
    const [b] = await memberBounces(db.pool, kim.id);
    expect(b).toMatchObject({ category: 'delayed', counted: false });
  });
});
