import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createList } from '../src/db/lists.ts';
import type { DeliveryWorker } from '../src/delivery/worker.ts';
import { drained, startCaptureRelay, startWorker, workerConfig, type CaptureRelay } from './helpers/capture-relay.ts';
import { BIN, ROOT } from './helpers/cli.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { message, sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';

let db: TestDatabase;
let relay: CaptureRelay;
let smtp: RunningIngest;
let child: ChildProcess | undefined;
let rescuer: DeliveryWorker | undefined;

const MEMBERS = 200;
const BATCH = 40;

beforeAll(async () => {
  db = await testDatabase();
  relay = await startCaptureRelay();
  smtp = await startIngest(db.pool);
  const list = await createList(db.pool, { address: 'crash@lists.example.org', name: 'crash', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  await db.pool.query(
    `insert into members (list_id, email, mode) select $1, 'm' || g || '@c' || (g % 5) || '.example', 'each' from generate_series(1, $2::int) g`,
    [list.id, MEMBERS],
  );
});

afterAll(async () => {
  child?.kill('SIGKILL');
  await rescuer?.stop();
  await smtp?.stop();
  await relay?.stop();
  await db?.drop();
});

it('a worker killed mid-batch leaves at most that batch to be sent twice, and nothing unsent', async () => {
  // A slow relay, so the kill lands in the middle of a batch.
  relay.setDelay(15);
  child = spawn(process.execPath, [BIN, 'serve', '--worker'], {
    cwd: ROOT,
    stdio: 'ignore',
    env: {
      ...process.env,
      DATABASE_URL: db.url,
      RELAY_URL: relay.url,
      MAIL_DOMAIN: 'lists.example.org',
      LOG_LEVEL: 'silent',
      DELIVERY_BATCH_SIZE: String(BATCH),
      DELIVERY_CONNECTIONS: '4',
      DELIVERY_LEASE_SECONDS: '2',
      DELIVERY_POLL_MS: '100',
    },
  });
  // Wait for the child worker to register itself before giving it work.
  const deadline = Date.now() + 20_000;
  while ((await db.pool.query('select 1 from delivery_workers')).rows.length === 0) {
    if (Date.now() > deadline) throw new Error('child worker did not start');
    await new Promise((r) => setTimeout(r, 100));
  }
  const res = await sendRaw(smtp.port, { from: 'alice@example.org', to: ['crash@lists.example.org'] }, message({ id: 'crash-1@example.org', to: 'crash@lists.example.org' }));
  expect(res.ok).toBe(true);

  await relay.waitFor(Math.floor(BATCH * 1.5), 30_000);
  child.kill('SIGKILL');
  await new Promise<void>((resolve) => child!.once('exit', () => resolve()));
  child = undefined;

  const { rows: inFlight } = await db.pool.query<{ recipient: string }>(`select recipient from outbox where state = 'sending'`);
  expect(inFlight.length).toBeGreaterThan(0);
  expect(inFlight.length).toBeLessThanOrEqual(2 * BATCH); // claimed: the batch going out and the next one
  const beforeRescue = relay.messages.length;

  relay.setDelay(0);
  rescuer = await startWorker(db, workerConfig(relay));
  await relay.waitFor(MEMBERS, 30_000);
  await drained(db, 30_000);
  await new Promise((r) => setTimeout(r, 300));

  const counts = new Map<string, number>();
  for (const m of relay.messages) counts.set(m.to, (counts.get(m.to) ?? 0) + 1);
  expect(counts.size).toBe(MEMBERS);
  const twice = [...counts].filter(([, n]) => n > 1).map(([to]) => to);
  expect([...counts.values()].every((n) => n <= 2)).toBe(true);
  expect(twice.length).toBeLessThanOrEqual(BATCH);
  // Only rows of the batch that was in flight can have gone out twice.
  const inFlightSet = new Set(inFlight.map((r) => r.recipient));
  expect(twice.every((to) => inFlightSet.has(to))).toBe(true);
  expect(relay.messages.length - beforeRescue).toBeLessThanOrEqual(MEMBERS - (beforeRescue - inFlight.length) + BATCH);
  const { rows } = await db.pool.query(`select state, count(*)::int as n from outbox group by state`);
  expect(rows).toEqual([{ state: 'sent', n: MEMBERS }]);
});
