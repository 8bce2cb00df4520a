/*
 * src/repeated-failures.ts: a failure that repeats logs one line when it starts (and one per new
 * kind of error), at most a summary per interval, and one when it ends. Real timers, an interval
 * of a tenth of a second. The whole process's log of an outage: db-outage-log.test.ts.
 */

import { pino } from 'pino';
import { afterAll, expect, it } from 'vitest';
import { RepeatedFailures, setRepeatSummarySeconds } from '../src/repeated-failures.ts';

const INTERVAL_MS = 100;
setRepeatSummarySeconds(INTERVAL_MS / 1000);
afterAll(() => setRepeatSummarySeconds(60));

function logged() {
  const lines: { level: number; msg: string; failures?: number; err?: { message: string }; error?: { message: string; code?: string }; task?: string }[] = [];
  const log = pino({ level: 'info', base: null, timestamp: false }, { write: (l: string) => void lines.push(JSON.parse(l)) });
  return { lines, log };
}

const refused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

it('logs a failure once, sums up its repeats once per interval, and says when it recovers', async () => {
  const { lines, log } = logged();
  const failures = new RepeatedFailures(log);
  for (let i = 0; i < 50; i++) failures.failed('chore', refused(), 'chore failed', { task: 'digests' });
  expect(lines.map((l) => [l.level, l.msg, l.task, l.err?.message])).toEqual([[50, 'chore failed', 'digests', 'connect ECONNREFUSED 127.0.0.1:5432']]);
  await sleep(INTERVAL_MS * 1.5);
  for (let i = 0; i < 10; i++) failures.failed('chore', refused(), 'chore failed', { task: 'digests' });
  await sleep(INTERVAL_MS * 1.5);
  expect(lines.slice(1).map((l) => [l.level, l.msg, l.failures, l.error])).toEqual([
    [50, 'chore failed: still failing', 49, { message: 'connect ECONNREFUSED 127.0.0.1:5432', code: 'ECONNREFUSED' }],
    [50, 'chore failed: still failing', 10, { message: 'connect ECONNREFUSED 127.0.0.1:5432', code: 'ECONNREFUSED' }],
  ]);
  // Nothing more to say, nothing said.
  await sleep(INTERVAL_MS * 2);
  expect(lines).toHaveLength(3);
  failures.ok('chore');
  expect(lines.slice(3).map((l) => [l.level, l.msg, l.failures])).toEqual([[30, 'chore failed: recovered', 60]]);
  // A success with no failure under way says nothing; the next failure starts anew.
  failures.ok('chore');
  failures.failed('chore', refused(), 'chore failed');
  expect(lines.slice(4).map((l) => l.msg)).toEqual(['chore failed']);
  failures.stop();
});

it('says a new kind of error at once, and keeps each key apart', async () => {
  const { lines, log } = logged();
  const failures = new RepeatedFailures(log);
  failures.failed('a', refused(), 'a failed');
  failures.failed('a', new Error('Connection terminated unexpectedly'), 'a failed');
  failures.failed('a', new Error('Connection terminated unexpectedly'), 'a failed');
  failures.failed('b', refused(), 'b failed', {}, 'warn');
  failures.ok('a');
  expect(lines.map((l) => [l.level, l.msg, l.err?.message ?? null, l.failures ?? null])).toEqual([
    [50, 'a failed', 'connect ECONNREFUSED 127.0.0.1:5432', null],
    [50, 'a failed', 'Connection terminated unexpectedly', 2],
    [40, 'b failed', 'connect ECONNREFUSED 127.0.0.1:5432', null],
    [30, 'a failed: recovered', null, 3],
  ]);
  expect(failures.failing('a')).toBe(false);
  expect(failures.failing('b')).toBe(true);
  failures.stop();
});

it('ends a failure that has no success to end it after an interval without one', async () => {
  const { lines, log } = logged();
  const failures = new RepeatedFailures(log, { endsWhenQuiet: true });
  failures.failed('request', refused(), 'request failed', {}, 'warn');
  failures.failed('request', refused(), 'request failed', {}, 'warn');
  await sleep(INTERVAL_MS * 3);
  expect(lines.map((l) => [l.level, l.msg, l.failures ?? null])).toEqual([
    [40, 'request failed', null],
    [40, 'request failed: still failing', 1],
    [30, 'request failed: no more for 0.1 s', 2],
  ]);
  expect(failures.failing('request')).toBe(false);
});
