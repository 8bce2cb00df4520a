/*
 * PostgreSQL's own client programs on the PATH (pg_dump, pg_restore), for backups: which major
 * each is, and a run of one against the database with the password kept out of the process
 * list, its stderr kept for the error line, and its life tied to ours (killed when we fail or are
 * interrupted).
 */

import { spawn, type ChildProcess } from 'node:child_process';

export type PgToolName = 'pg_dump' | 'pg_restore';

export interface PgTool {
  name: PgToolName;
  /** as `--version` gives it, e.g. `15.20` */
  version: string;
  /** null when the program does not say it is PostgreSQL's */
  major: number | null;
}

/** `--version` must answer within this; a program that hangs is treated as absent. */
const VERSION_TIMEOUT_MS = 10_000;
/** The end of a program's stderr kept for the error line. */
const STDERR_KEPT = 4096;

/** The PATH's `name` and its version, or null when there is none. */
export function findPgTool(name: PgToolName): Promise<PgTool | null> {
  return new Promise((resolve) => {
    let out = '';
    const child = spawn(name, ['--version'], { stdio: ['ignore', 'pipe', 'ignore'], env: { ...process.env, LC_ALL: 'C' } });
    // Our own timer rather than spawn's `timeout`, which outlives a program that never started and holds the process open.
    const timer = setTimeout(() => child.kill('SIGKILL'), VERSION_TIMEOUT_MS);
    child.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
    child.on('error', () => {
      clearTimeout(timer);
      resolve(null); // ENOENT: not on the PATH
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve(code === 0 ? parseVersion(name, out) : null);
    });
  });
}

/** `pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)` → 15.20, major 15; `18beta1` → major 18. */
export function parseVersion(name: PgToolName, line: string): PgTool {
  const m = /\(PostgreSQL\) (\d+)((?:\.\d+)?[a-z0-9]*)/.exec(line);
  return m ? { name, version: `${m[1]}${m[2]}`, major: Number(m[1]) } : { name, version: line.trim().split('\n')[0] || 'unknown', major: null };
}

/** The major of a server (10 or later) from its `server_version_num`: 150020 → 15. */
export function serverMajor(versionNum: number): number {
  return Math.floor(versionNum / 10000);
}

export interface ToolRun {
  child: ChildProcess;
  /** resolves when the program has ended and its pipes are closed: null `code` when a signal ended it */
  ended: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** the end of what it wrote to stderr, on one line */
  stderr(): string;
  /** ends it (SIGTERM, then SIGKILL after 5 s) and waits for it */
  stop(): Promise<void>;
}

/**
 * Starts `tool` with `args` and a connection to `url`: the URL goes in `--dbname` without its
 * password, which goes in PGPASSWORD (the process list shows arguments, not the environment).
 * `appName` names its session in pg_stat_activity, so that a caller can end that session.
 */
export function runPgTool(tool: PgToolName, args: string[], url: string, appName: string, stdio: { stdin: 'pipe' | 'ignore'; stdout: 'pipe' | 'ignore' }): ToolRun {
  const { dbname, password } = splitPassword(url);
  const env: NodeJS.ProcessEnv = { ...process.env, PGAPPNAME: appName, LC_ALL: 'C' };
  if (password !== null) env.PGPASSWORD = password;
  const child = spawn(tool, [...args, `--dbname=${dbname}`], { stdio: [stdio.stdin, stdio.stdout, 'pipe'], env });
  let tail = '';
  child.stderr!.on('data', (d: Buffer) => (tail = (tail + d.toString('utf8')).slice(-STDERR_KEPT)));
  const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('error', (err) => {
      tail += `${err.message}`;
      resolve({ code: -1, signal: null });
    });
    child.on('close', (code, signal) => resolve({ code, signal }));
  });
  // A pipe it closed (it failed, or it stopped reading) is seen through `ended`, not as a throw.
  child.stdin?.on('error', () => undefined);
  return {
    child,
    ended,
    stderr: () => tail.replace(/\s+/g, ' ').trim(),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return void (await ended);
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await ended;
      clearTimeout(timer);
    },
  };
}

/** What a run ended with, as a clause for an error line (`pg_dump failed (exit 1): …`). */
export function toolFailure(tool: PgToolName, run: ToolRun, end: { code: number | null; signal: NodeJS.Signals | null }): string {
  const how = end.signal ? `ended by ${end.signal}` : `exit ${end.code}`;
  const said = run.stderr();
  return `${tool} failed (${how})${said ? `: ${said}` : ''}`;
}

/**
 * A URL for libpq without its password, and the password; a conninfo is left as it is. node-postgres'
 * `sslmode=no-verify` (encrypt, check nothing) is libpq's `require`; libpq knows no other name for it.
 */
export function splitPassword(url: string): { dbname: string; password: string | null } {
  if (!/^postgres(ql)?:\/\//.test(url)) return { dbname: url, password: null };
  const u = new URL(url);
  if (u.searchParams.get('sslmode') === 'no-verify') u.searchParams.set('sslmode', 'require');
  const password = u.password ? decodeURIComponent(u.password) : null;
  u.password = '';
  return { dbname: u.toString(), password };
}

/**
 * Runs `onSignal` on SIGINT, SIGTERM or SIGHUP while a program of ours runs (so that it is ended
 * with us, not left behind); returns the function that stops listening. A second signal, with
 * no listener left, ends the process as usual.
 */
export function onInterrupt(onSignal: (signal: NodeJS.Signals) => void): () => void {
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  const handler = (signal: NodeJS.Signals) => {
    off();
    onSignal(signal);
  };
  const off = () => {
    for (const s of signals) process.off(s, handler);
  };
  for (const s of signals) process.on(s, handler);
  return off;
}
