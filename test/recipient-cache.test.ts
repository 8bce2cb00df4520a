import { afterAll, beforeAll, expect, it } from 'vitest';
import { createList } from '../src/db/lists.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { message, sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';

let db: TestDatabase;
let smtp: RunningIngest;
const newList = (local: string) =>
  createList(db.pool, { address: `${local}@lists.example.org`, name: local, description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
const send = (to: string) => sendRaw(smtp.port, { from: 'a@example.org', to: [to] }, message({}));

beforeAll(async () => {
  db = await testDatabase();
  smtp = await startIngest(db.pool, { databaseUrl: db.url });
});
afterAll(async () => {
  await smtp?.stop();
  await db?.drop();
});

it('accepts mail for a list created a moment ago by another process', async () => {
  expect((await send('fresh@lists.example.org')).responseCode).toBe(550);
  await newList('fresh');
  expect((await send('fresh@lists.example.org')).ok).toBe(true);
});

it('forgets a cached list as soon as it is renamed elsewhere', async () => {
  await newList('moving');
  expect((await send('moving@lists.example.org')).ok).toBe(true);
  expect((await send('moving-request@lists.example.org')).ok).toBe(true);
  // Another process renames the list: every instance's cache is cleared through NOTIFY.
  await db.pool.query(`update lists set local_part = 'moved', address = 'moved@lists.example.org' where local_part = 'moving'`);
  let code: number | undefined;
  for (let i = 0; i < 20 && code !== 550; i++) {
    code = (await send('moving@lists.example.org')).responseCode;
    if (code !== 550) await new Promise((r) => setTimeout(r, 50));
  }
  expect(code).toBe(550);
  expect((await send('moved@lists.example.org')).ok).toBe(true);
});
