import { afterAll, beforeAll, expect, it } from 'vitest';
import { createList } from '../src/db/lists.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startIngest, type RunningIngest } from './helpers/smtp.ts';
import { formatFuzzReport, runFuzz } from './helpers/smtp-fuzz.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';

/**
 * The SMTP fuzz run (test/helpers/smtp-fuzz.ts) with a fixed seed: every fixture and corpus
 * message as it is, then mutations of them, over real SMTP to the real ingest listener.
 * `npm run chaos` runs more (FUZZ_INPUTS); FUZZ_SEED plays another run.
 */
const SEED = Number(process.env.FUZZ_SEED ?? 1202);
const LISTS: [string, string] = ['fuzz@lists.example.org', 'fuzz-b@lists.example.org'];

let db: TestDatabase;
let smtp: RunningIngest;
let web: RunningWeb;

beforeAll(async () => {
  db = await testDatabase();
  for (const address of LISTS) {
    await createList(db.pool, { address, name: address.split('@')[0], description: 'fuzz', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  }
  smtp = await startIngest(db.pool, { databaseUrl: db.url });
  web = await startWeb(db);
});

afterAll(async () => {
  await web?.stop();
  await smtp?.stop();
  await db?.drop();
});

it('answers every mutated real message with 250 or 5xx, stays up, and keeps the exact bytes of what it accepted', async () => {
  const report = await runFuzz({ port: smtp.port, pool: db.pool, webUrl: web.url, inputs: 300, seed: SEED, lists: LISTS });
  console.log(formatFuzzReport(report));
  expect(report.tried).toBe(300);
  expect(report.serverUp).toBe(true);
  expect(report.temporary).toEqual({});
  expect(report.noReply).toBe(0);
  expect(report.failures).toEqual([]);
}, 300_000);
