import crypto from 'node:crypto';
import fs from 'node:fs';
import pg from 'pg';
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import { withDatabase } from './global-setup.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { describeSchema } from './helpers/schema.ts';

// The migrated template (cloned) against an empty database that loads sql/schema.sql, both on the
// server of this run, compared by what the catalogs say (test/helpers/schema.ts).
let migrated: TestDatabase;
const loadedName = `lk_schema_${crypto.randomBytes(6).toString('hex')}`;
const adminUrl = () => inject('adminDatabaseUrl');

beforeAll(async () => {
  migrated = await testDatabase();
  await admin(`create database ${loadedName}`);
});

afterAll(async () => {
  await migrated?.drop();
  await admin(`drop database if exists ${loadedName} with (force)`);
});

test('a freshly migrated database has the schema of sql/schema.sql (npm run schema writes it)', async () => {
  const loaded = new pg.Client({ connectionString: withDatabase(adminUrl(), loadedName) });
  await loaded.connect();
  try {
    // As pg_dump's own preamble would: functions come before the tables their bodies name.
    await loaded.query(`set check_function_bodies = off; select set_config('search_path', '', false)`);
    await loaded.query(fs.readFileSync(new URL('../sql/schema.sql', import.meta.url), 'utf8'));
    const expected = await describeSchema(loaded);
    const client = await migrated.pool.connect();
    const actual = await describeSchema(client).finally(() => client.release());
    expect(actual.length).toBeGreaterThan(100);
    expect(actual, 'the migrations and sql/schema.sql disagree: run `npm run schema` and review the diff').toEqual(expected);
  } finally {
    await loaded.end();
  }
});

async function admin(sql: string) {
  const client = new pg.Client({ connectionString: adminUrl() });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}
