import { afterAll, beforeAll, expect, it } from 'vitest';
import { createList } from '../src/db/lists.ts';
import { addMember } from '../src/db/members.ts';
import type { DeliveryWorker } from '../src/delivery/worker.ts';
import { startCaptureRelay, startWorker, workerConfig, type CaptureRelay } from './helpers/capture-relay.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { message, sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';

let db: TestDatabase;
let relay: CaptureRelay;
let smtp: RunningIngest;
let worker: DeliveryWorker;

beforeAll(async () => {
  db = await testDatabase();
  relay = await startCaptureRelay();
  smtp = await startIngest(db.pool);
  const list = await createList(db.pool, { address: 'dev@lists.example.org', name: 'dev', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  await addMember(db.pool, list.id, 'ann@x.example', 'each');
  // Polling once a minute: anything delivered within seconds was woken by NOTIFY.
  worker = await startWorker(db, workerConfig(relay, { DELIVERY_POLL_MS: '60000' }));
});

afterAll(async () => {
  await worker?.stop();
  await smtp?.stop();
  await relay?.stop();
  await db?.drop();
});

async function postAndTime(id: string): Promise<number> {
  const before = relay.messages.length;
  const t0 = Date.now();
  const res = await sendRaw(smtp.port, { from: 'alice@example.org', to: ['dev@lists.example.org'] }, message({ id }));
  expect(res.ok).toBe(true);
  await relay.waitFor(before + 1, 10_000);
  return Date.now() - t0;
}

it('wakes the worker by NOTIFY as soon as a post is committed', async () => {
  expect(await postAndTime('notify-1@example.org')).toBeLessThan(5_000);
});

it('listens again after its notification connection is killed', async () => {
  const { rows } = await db.pool.query(
    `select pg_terminate_backend(pid) as killed from pg_stat_activity where datname = current_database() and application_name like '%:listen'`);
  expect(rows.length).toBeGreaterThan(0);
  // Give the notifier its first reconnection delay (0.5 s).
  await new Promise((r) => setTimeout(r, 1_500));
  expect(await postAndTime('notify-2@example.org')).toBeLessThan(5_000);
});

it('stops promptly, even while waiting for its next poll', async () => {
  const t0 = Date.now();
  await worker.stop();
  expect(Date.now() - t0).toBeLessThan(3_000);
  const { rows } = await db.pool.query('select name from delivery_workers');
  expect(rows).toEqual([]);
});
