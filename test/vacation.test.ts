/*
 * A vacation: `nomail` until a date (members.nomail_until), set from /account, the member's panel
 * page and `listkeeper subscribe --until`; the maintenance chore resumes the mode held before,
 * audits it and tells the member once, however many workers run it at once.
 */

import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { changeOwnSubscription } from '../src/core/members.ts';
import { parseResumeDate, runVacationEnds } from '../src/core/vacation.ts';
import { createList, type ListRow } from '../src/db/lists.ts';
import { addMember, findMember } from '../src/db/members.ts';
import { log } from '../src/log.ts';
import { loggedIn, queuedMail, type WebClient } from './helpers/browser.ts';
import { cli } from './helpers/cli.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';

const PUBLIC_URL = 'https://lists.example.org';
const M = '/admin/lists/dev@lists.example.org/members';

let db: TestDatabase;
let web: RunningWeb;
let dev: ListRow;
let me: WebClient;
let owner: WebClient;
let env: Record<string, string>;

/** A day `n` days from today, as YYYY-MM-DD (UTC). */
const day = (n: number) => new Date(Date.now() + n * 86_400_000).toISOString().slice(0, 10);
const member = async (email: string) => (await findMember(db.pool, dev.id, email))!;
const audits = async (action: string, target: string) =>
  (await db.pool.query<{ actor: string; detail: Record<string, unknown> }>('select actor, detail from audit_log where action = $1 and target = $2 order by id', [action, target])).rows;

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db);
  env = { DATABASE_URL: db.url, MAIL_DOMAIN: 'lists.example.org' };
  dev = await createList(db.pool, { address: 'dev@lists.example.org', name: 'Dev', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: ['owner@example.org'] });
  await addMember(db.pool, dev.id, 'me@example.org', 'digest');
  await addMember(db.pool, dev.id, 'pat@example.org', 'each');
  me = await loggedIn(db, web.url, 'me@example.org');
  owner = await loggedIn(db, web.url, 'owner@example.org');
});
afterAll(async () => {
  await web?.stop();
  await db?.drop();
});
beforeEach(async () => {
  await db.pool.query('delete from outbox');
  await db.pool.query('delete from rate_limits');
});

describe('the resume date', () => {
  it('takes a real later day and refuses the rest with the reason', () => {
    const now = new Date('2026-12-02T17:00:00Z');
    expect(parseResumeDate('2026-12-03', now).toISOString()).toBe('2026-12-03T00:00:00.000Z');
    expect(() => parseResumeDate('2026-12-02', now)).toThrow(/not in the future/);
    expect(() => parseResumeDate('2026-11-30', now)).toThrow(/not in the future/);
    expect(() => parseResumeDate('2027-02-30', now)).toThrow(/not a date: give the day delivery resumes as YYYY-MM-DD/);
    expect(() => parseResumeDate('next week', now)).toThrow(/not a date/);
    expect(() => parseResumeDate('2030-01-01', now)).toThrow(/more than two years away/);
  });
});

describe('a member pauses delivery from /account', () => {
  it('pauses until a date, keeping the mode to go back to', async () => {
    const id = (await member('me@example.org')).id;
    const r = await me.post(`/account/subscriptions/${id}`, { action: 'mode', mode: 'nomail', until: day(10) });
    expect(r.status).toBe(303);
    const m = await member('me@example.org');
    expect(m).toMatchObject({ mode: 'nomail', mode_before_nomail: 'digest' });
    expect(m.nomail_until!.toISOString().slice(0, 10)).toBe(day(10));
    const page = (await me.get('/account')).text;
    expect(page).toContain(`delivery is paused until ${day(10)}, then resumes by itself`);
    expect(page).toContain(`value="${day(10)}"`);
    expect(page).toContain(`Paused until ${day(10)}; delivery then resumes as a digest.`);
    expect((await audits('self.mode', 'me@example.org')).at(-1)).toMatchObject({ actor: 'me@example.org', detail: { mode: 'nomail', until: day(10) } });
  });

  it('refuses a past or malformed date and changes nothing', async () => {
    const id = (await member('me@example.org')).id;
    const past = await me.post(`/account/subscriptions/${id}`, { action: 'mode', mode: 'nomail', until: day(-1) });
    expect(past.status).toBe(400);
    expect(past.text).toContain('is not in the future');
    const bad = await me.post(`/account/subscriptions/${id}`, { action: 'mode', mode: 'nomail', until: '31/12/2026' });
    expect(bad.status).toBe(400);
    expect(bad.text).toContain('is not a date');
    expect((await member('me@example.org')).nomail_until!.toISOString().slice(0, 10)).toBe(day(10));
  });

  it('ends the vacation by choosing another mode, the date box left filled', async () => {
    const id = (await member('me@example.org')).id;
    await me.post(`/account/subscriptions/${id}`, { action: 'mode', mode: 'each', until: day(10) });
    expect(await member('me@example.org')).toMatchObject({ mode: 'each', nomail_until: null, mode_before_nomail: null });
    await me.post(`/account/subscriptions/${id}`, { action: 'mode', mode: 'digest' });
  });
});

describe('the maintenance chore resumes delivery', () => {
  it('puts the member back on the previous mode once, audited and told once, with two passes at once', async () => {
    const id = (await member('me@example.org')).id;
    await me.post(`/account/subscriptions/${id}`, { action: 'mode', mode: 'nomail', until: day(3) });
    // Not due yet: nothing happens.
    expect(await runVacationEnds(db.pool, PUBLIC_URL, log)).toBe(0);
    expect((await member('me@example.org')).mode).toBe('nomail');
    // Back-dated: the day has come.
    await db.pool.query(`update members set nomail_until = now() - interval '1 minute' where id = $1`, [id]);
    const [a, b] = await Promise.all([runVacationEnds(db.pool, PUBLIC_URL, log), runVacationEnds(db.pool, PUBLIC_URL, log)]);
    expect(a + b).toBe(1);
    expect(await runVacationEnds(db.pool, PUBLIC_URL, log)).toBe(0);
    expect(await member('me@example.org')).toMatchObject({ mode: 'digest', nomail_until: null, mode_before_nomail: null, status: 'active' });
    const ends = await audits('member.vacation_end', 'me@example.org');
    expect(ends).toHaveLength(1);
    expect(ends[0]).toMatchObject({ actor: 'vacation', detail: { mode: 'digest' } });
    const mail = await queuedMail(db, 'me@example.org');
    expect(mail).toHaveLength(1);
    expect(mail[0].subject).toBe('Delivery from dev@lists.example.org has resumed');
    expect(mail[0].text).toContain('the digests start');
    expect(mail[0].text).toContain('https://lists.example.org/account');
  });

  it('resumes to each when no mode was remembered, and leaves plain nomail alone', async () => {
    await addMember(db.pool, dev.id, 'quiet@example.org', 'nomail');
    await db.pool.query(`update members set mode = 'nomail', nomail_until = now() - interval '1 hour' where list_id = $1 and email = 'pat@example.org'`, [dev.id]);
    expect(await runVacationEnds(db.pool, PUBLIC_URL, log)).toBe(1);
    expect((await member('pat@example.org')).mode).toBe('each');
    expect((await member('quiet@example.org')).mode).toBe('nomail');
    expect(await queuedMail(db, 'quiet@example.org')).toHaveLength(0);
  });
});

describe('an owner pauses a member from the panel', () => {
  it('pauses until a date from the member page, and refuses a past one', async () => {
    const back = `${M}/pat%40example.org`;
    const r = await owner.post(`${M}/bulk`, { emails: 'pat@example.org', action: 'pause', until: day(5), back });
    expect(r.status).toBe(303);
    expect(await member('pat@example.org')).toMatchObject({ mode: 'nomail', mode_before_nomail: 'each' });
    const page = (await owner.get(back)).text;
    expect(page).toContain(`until ${day(5)}, then each again`);
    expect((await audits('member.mode', 'pat@example.org')).at(-1)).toMatchObject({ actor: 'owner@example.org', detail: { mode: 'nomail', until: day(5) } });
    const past = await owner.post(`${M}/bulk`, { emails: 'pat@example.org', action: 'pause', until: day(0), back });
    expect(past.status).toBe(400);
    expect(past.text).toContain('is not in the future');
    // Switching to plain nomail makes it open-ended.
    await owner.post(`${M}/bulk`, { emails: 'pat@example.org', action: 'mode-nomail', back });
    expect(await member('pat@example.org')).toMatchObject({ mode: 'nomail', nomail_until: null });
  });
});

describe('the command line', () => {
  it('subscribes with --mode nomail --until and shows nomail_until in members --json', async () => {
    await addMember(db.pool, dev.id, 'cli@example.org', 'digest');
    const r = await cli(['subscribe', 'dev', 'cli@example.org', 'new@example.org', '--mode', 'nomail', '--until', day(7), '--json'], env);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).map((x: { result: string }) => x.result)).toEqual(['updated', 'added']);
    expect(await member('cli@example.org')).toMatchObject({ mode: 'nomail', mode_before_nomail: 'digest' });
    const roster = JSON.parse((await cli(['members', 'dev', '--json'], env)).stdout) as { email: string; mode: string; nomail_until: string | null }[];
    expect(roster.find((x) => x.email === 'cli@example.org')).toMatchObject({ mode: 'nomail', nomail_until: day(7) });
    expect(roster.find((x) => x.email === 'new@example.org')).toMatchObject({ mode: 'nomail', nomail_until: day(7) });
    expect(roster.find((x) => x.email === 'quiet@example.org')).toEqual({ email: 'quiet@example.org', name: null, mode: 'nomail', status: 'active', bounce_score: 0 });
  });

  it('refuses a past or malformed date and --until without nomail', async () => {
    const past = await cli(['subscribe', 'dev', 'late@example.org', '--mode', 'nomail', '--until', '2020-01-01'], env);
    expect(past.code).not.toBe(0);
    expect(past.stderr).toContain('2020-01-01 is not in the future');
    const bad = await cli(['subscribe', 'dev', 'late@example.org', '--mode', 'nomail', '--until', 'tomorrow'], env);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('"tomorrow" is not a date');
    const wrongMode = await cli(['subscribe', 'dev', 'late@example.org', '--until', day(3)], env);
    expect(wrongMode.code).not.toBe(0);
    expect(wrongMode.stderr).toContain('--until goes with --mode nomail');
    expect(await findMember(db.pool, dev.id, 'late@example.org')).toBeNull();
  });
});

describe('a pause and leaving the list', () => {
  it('ends with an unsubscribe: subscribed again as plain nomail, delivery never resumes by itself', async () => {
    const sub = (email: string, ...more: string[]) => cli(['subscribe', 'dev', email, ...more, '--json'], env).then((r) => JSON.parse(r.stdout)[0].result);
    await addMember(db.pool, dev.id, 'carol@example.org', 'each');
    expect(await sub('carol@example.org', '--mode', 'nomail', '--until', day(5))).toBe('updated');
    expect(await member('carol@example.org')).toMatchObject({ mode: 'nomail', mode_before_nomail: 'each' });
    expect((await cli(['unsubscribe', 'dev', 'carol@example.org'], env)).code).toBe(0);
    expect(await member('carol@example.org')).toMatchObject({ status: 'unsubscribed', nomail_until: null, mode_before_nomail: null });
    expect(await sub('carol@example.org', '--mode', 'nomail')).toBe('reactivated');
    expect(await member('carol@example.org')).toMatchObject({ status: 'active', mode: 'nomail', nomail_until: null, mode_before_nomail: null });
    // Even with the old date come and gone, the worker finds nothing to resume.
    await db.pool.query(`update members set updated_at = now() - interval '10 days' where email = 'carol@example.org'`);
    await runVacationEnds(db.pool, PUBLIC_URL, log);
    expect((await member('carol@example.org')).mode).toBe('nomail');
  });

  it('ends a running pause when plain nomail is given, and keeps the mode to go back to when a new date is', async () => {
    const sub = (email: string, ...more: string[]) => cli(['subscribe', 'dev', email, ...more, '--json'], env).then((r) => JSON.parse(r.stdout)[0].result);
    await addMember(db.pool, dev.id, 'dana@example.org', 'digest');
    await sub('dana@example.org', '--mode', 'nomail', '--until', day(5));
    expect(await sub('dana@example.org', '--mode', 'nomail', '--until', day(9))).toBe('updated');
    expect(await member('dana@example.org')).toMatchObject({ mode: 'nomail', mode_before_nomail: 'digest' });
    expect(await sub('dana@example.org', '--mode', 'nomail')).toBe('updated');
    expect(await member('dana@example.org')).toMatchObject({ mode: 'nomail', nomail_until: null, mode_before_nomail: null });
  });

  it('does not let a member set the mode of a subscription they have left', async () => {
    await addMember(db.pool, dev.id, 'gone@example.org', 'each');
    const m = await member('gone@example.org');
    await changeOwnSubscription(db.pool, m.id, { email: 'gone@example.org', emails: ['gone@example.org'] }, 'unsubscribe');
    await expect(changeOwnSubscription(db.pool, m.id, { email: 'gone@example.org', emails: ['gone@example.org'] }, { mode: 'nomail', until: new Date(Date.now() + 5 * 86_400_000) }))
      .rejects.toThrow('You have left this list');
    expect(await member('gone@example.org')).toMatchObject({ status: 'unsubscribed', nomail_until: null });
  });
});
