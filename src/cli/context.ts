import os from 'node:os';
import { config, ConfigError, type Config } from '../config.ts';
import { openDatabase, type Database } from '../db/database.ts';
import { isAppError } from '../errors.ts';
import { useCliLogging } from '../log.ts';

/** What a CLI command works with. */
export interface CliContext {
  cfg: Config;
  db: Database;
}

/**
 * Runs one command against the database (embedded or DATABASE_URL) and closes it afterwards.
 * Errors go to stderr as one line and set a non-zero exit code.
 */
export async function runCommand(fn: (ctx: CliContext) => Promise<void>): Promise<void> {
  let db: Database | undefined;
  try {
    const cfg = config();
    useCliLogging(cfg.logLevelSet);
    db = await openDatabase(cfg, 'cli');
    await fn({ cfg, db });
  } catch (err) {
    fail(err);
  } finally {
    await db?.close().catch(() => undefined);
  }
}

/** Who acts from the command line, for decided_by and the audit log: `cli:USER`. */
export function cliActor(): string {
  return `cli:${os.userInfo().username}`;
}

export function fail(err: unknown): void {
  const message = err instanceof ConfigError || isAppError(err) ? err.message : `error: ${(err as Error)?.message ?? err}`;
  process.stderr.write(`listkeeper: ${message}\n`);
  process.exitCode = isAppError(err) && err.status === 404 ? 3 : 1;
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** A plain aligned table for humans. */
export function printTable(rows: Record<string, unknown>[], columns: string[]): void {
  if (rows.length === 0) return;
  const cell = (v: unknown) => (v instanceof Date ? v.toISOString() : v === null || v === undefined ? '' : String(v));
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(widths[i])).join('  ').trimEnd();
  process.stdout.write(`${line(columns.map((c) => c.toUpperCase()))}\n`);
  for (const r of rows) process.stdout.write(`${line(columns.map((c) => cell(r[c])))}\n`);
}

/** Accumulator for repeatable options (commander). */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
