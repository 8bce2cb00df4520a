/**
 * `npm run schema`: writes sql/schema.sql, the schema after all migrations, for reading. It
 * migrates a fresh database on the server of DATABASE_URL (default: the local PostgreSQL as
 * postgres), dumps it with the pg_dump on the PATH (which must be at least the server's major
 * version) and leaves out what changes from one pg_dump to the next: SET lines, \restrict tokens,
 * version lines. test/schema.test.ts fails when the migrations and sql/schema.sql disagree.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { migrate } from '../src/db/migrate.ts';
import { log } from '../src/log.ts';
import { withDatabase } from './global-setup.ts';

const SCHEMA_FILE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../sql/schema.sql');

const HEADER = `-- The schema after all migrations in this folder, for reading: the numbered files are what runs.
-- Written by \`npm run schema\` (test/schema-dump.ts) from pg_dump --schema-only --no-owner
-- --no-privileges of a freshly migrated database, without pg_dump's SET lines; test/schema.test.ts
-- fails when a fresh migration differs from it. Regenerate it in the commit that adds a migration.
-- To load it by hand, run \`set check_function_bodies = off\` first (functions come before tables).
`;

/** pg_dump's output without what differs between pg_dump versions and runs. */
export function cleanDump(dump: string): string {
  const lines = dump
    .split('\n')
    .filter((l) => !/^\\(un)?restrict /.test(l))
    .filter((l) => !/^SET [a-z_]+ = /.test(l) && !l.startsWith("SELECT pg_catalog.set_config('search_path'"))
    .filter((l) => !/^-- Dumped (from|by) /.test(l));
  const body = lines
    .join('\n')
    .replace(/\n{3,}/g, '\n\n')
    .trim();
  return `${HEADER}\n${body}\n`;
}

async function main() {
  log.level = 'warn';
  const adminUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const name = `lk_schema_${process.pid}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`create database ${name}`);
    const url = withDatabase(adminUrl, name);
    const pool = new pg.Pool({ connectionString: url, max: 1 });
    try {
      await migrate(pool);
    } finally {
      await pool.end();
    }
    const dump = spawnSync('pg_dump', ['--schema-only', '--no-owner', '--no-privileges', '--dbname', url], { encoding: 'utf8' });
    if (dump.error) throw new Error(`cannot run pg_dump: ${dump.error.message}`);
    if (dump.status !== 0) throw new Error(`pg_dump failed: ${dump.stderr}`);
    fs.writeFileSync(SCHEMA_FILE, cleanDump(dump.stdout));
    process.stdout.write(`wrote ${path.relative(process.cwd(), SCHEMA_FILE)}\n`);
  } finally {
    await admin.query(`drop database if exists ${name} with (force)`).catch(() => undefined);
    await admin.end();
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err: Error) => {
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
  });
}
