import os from 'node:os';
import type { Config } from '../config.ts';
import type { Database } from '../db/database.ts';
import { isAppError } from '../errors.ts';

/** What a CLI command works with. */
export interface CliContext {
  cfg: Config;
  db: Database;
}

/**
 * Runs one command against the database (embedded or DATABASE_URL) and closes it afterwards.
 * Errors go to stderr as one line and set a non-zero exit code. The configuration, the logger
 * and the database code are loaded here, not when the program starts, so that `--help` and a
 * command's own modules (imported by its action) are all a command pays for.
 */
export async function runCommand(fn: (ctx: CliContext) => Promise<void>, opts: { migrate?: boolean } = {}): Promise<void> {
  quietOnClosedPipe();
  let db: Database | undefined;
  try {
    const cfg = await loadConfig();
    (await import('../log.ts')).useCliLogging(cfg.logLevelSet);
    db = await (await import('../db/database.ts')).openDatabase(cfg, 'cli', opts);
    await fn({ cfg, db });
  } catch (err) {
    fail(err);
  } finally {
    await db?.close().catch(() => undefined);
  }
}

/**
 * A reader that stops early (`listkeeper members dev | head`) closes the pipe: it has what it
 * wanted, so the command ends quietly with its exit code, as Unix tools do, instead of dying on
 * an unhandled EPIPE with a stack trace.
 */
function quietOnClosedPipe(): void {
  if (process.stdout.listenerCount('error') > 0) return;
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    process.exit(process.exitCode ?? 0);
  });
}

/** Who acts from the command line, for decided_by and the audit log: `cli:USER`. */
export function cliActor(): string {
  return `cli:${os.userInfo().username}`;
}

/** The configuration (environment over .env); an invalid one throws a ConfigError. */
export async function loadConfig(): Promise<Config> {
  return (await import('../config.ts')).config();
}

export function fail(err: unknown): void {
  // A ConfigError by name: importing config.ts here would load zod for every command's --help.
  const plain = (err instanceof Error && err.constructor.name === 'ConfigError') || isAppError(err);
  const message = plain ? (err as Error).message : `error: ${(err as Error)?.message ?? err}`;
  process.stderr.write(`listkeeper: ${message}\n`);
  process.exitCode = isAppError(err) && err.status === 404 ? 3 : 1;
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** What a command did with each address it was given: done (`email`) or refused (`input`, `error`). */
export type EachResult = { result: string } & ({ email: string; name?: string | null } | { input: string; error: string });

/**
 * One line per address (stdout when done, in the words of `labels`; stderr when refused), or the
 * JSON array with the results as they are; exit 1 if any was refused.
 */
export function reportEach(results: EachResult[], json?: boolean, labels: Record<string, string> = {}) {
  if (json) printJson(results);
  for (const r of results) {
    if ('error' in r) process.stderr.write(`listkeeper: ${r.error}\n`);
    else if (!json) process.stdout.write(`${r.email}: ${labels[r.result] ?? r.result}\n`);
  }
  if (results.some((r) => 'error' in r)) process.exitCode = 1;
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
