/*
 * A lock between the listkeeper processes that share DATA_DIR: the embedded server's start and
 * stop (embedded.ts) and its upgrade (embedded-upgrade.ts). It is a file created exclusively that
 * names its holder's pid. The kernel does not free it, so one left by a process that died is taken
 * over, and so is one older than `staleMs` (for a holder whose work is bounded). A live pid alone
 * does not say the holder lives: after a restart (a container's, above all) it is another
 * process's, often the very one now waiting; a process that started after the file was written
 * did not write it.
 */

import crypto from 'node:crypto';
import fs from 'node:fs';
import { isAlive, readOwner } from './embedded-server.ts';
import { log } from '../log.ts';

export interface FileLockOptions {
  /** logged once when another live process has held the lock for a second (a brief wait is normal) */
  waiting: string;
  /** a lock file older than this is stale whoever it names (default: never, while its holder lives) */
  staleMs?: number;
  /** how often to look again */
  pollMs?: number;
}

/** Callers in this process waiting for, or holding, each lock file: the last one's turn. */
const turns = new Map<string, Promise<void>>();

export async function withFileLock<T>(file: string, opts: FileLockOptions, fn: () => Promise<T>): Promise<T> {
  // Callers in one process take turns before the file: it names only the process, and a file that
  // names this process is taken for one left by an earlier process with the same pid.
  const before = turns.get(file) ?? Promise.resolve();
  let done!: () => void;
  const turn = before.then(() => new Promise<void>((resolve) => (done = resolve)));
  turns.set(file, turn);
  await before;
  try {
    return await lockedByFile(file, opts, fn);
  } finally {
    done();
    if (turns.get(file) === turn) turns.delete(file);
  }
}

async function lockedByFile<T>(file: string, opts: FileLockOptions, fn: () => Promise<T>): Promise<T> {
  const started = Date.now();
  let mine: fs.Stats | undefined;
  for (let said = false; !(mine = create(file)); ) {
    const seen = lockStat(file);
    const holder = readOwner(file);
    if (seen && (!holds(file, holder) || ageMs(file) > (opts.staleMs ?? Infinity))) {
      breakStale(file, seen, holder);
      continue;
    }
    if (!said && Date.now() - started > 1_000) {
      log.warn({ pid: holder }, opts.waiting);
      said = true;
    }
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 100));
  }
  try {
    return await fn();
  } finally {
    // Only the file this process made: one that outlived staleMs may have been taken over since.
    if (sameFile(lockStat(file), mine)) fs.rmSync(file, { force: true });
  }
}

/**
 * Makes the lock file with this process's pid already in it, or answers undefined if it exists.
 * Written to a file of its own first and linked into place: a lock file created empty and then
 * written was, for a moment, one that named no one, and a waiting process took it for stale and
 * removed it, so two held the lock (CI: a command stopped the server under another's feet).
 */
function create(file: string): fs.Stats | undefined {
  const tmp = `${file}.${process.pid}.${crypto.randomBytes(4).toString('hex')}`;
  try {
    fs.writeFileSync(tmp, String(process.pid), { flag: 'wx' });
    fs.linkSync(tmp, file);
    return fs.statSync(tmp);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return undefined;
    throw new Error(`cannot take the lock ${file}: ${(err as Error).message}`, { cause: err });
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

/**
 * Removes a lock file found stale, if it is still the one that was found so. Two waiting processes
 * that both found it stale would otherwise both remove it, the second removing the lock the first
 * had just taken in its place. They take turns by a second file, held for a moment only; one left
 * by a process that died there is removed after BREAKER_STALE_MS.
 */
function breakStale(file: string, seen: fs.Stats, holder: number | undefined): void {
  const breaker = `${file}.break`;
  if (!create(breaker)) {
    if (ageMs(breaker) > BREAKER_STALE_MS) fs.rmSync(breaker, { force: true });
    return;
  }
  try {
    if (sameFile(lockStat(file), seen) && readOwner(file) === holder) fs.rmSync(file, { force: true });
  } finally {
    fs.rmSync(breaker, { force: true });
  }
}

const BREAKER_STALE_MS = 10_000;

function lockStat(file: string): fs.Stats | undefined {
  try {
    return fs.statSync(file);
  } catch {
    return undefined;
  }
}

function sameFile(a: fs.Stats | undefined, b: fs.Stats | undefined): boolean {
  return !!a && !!b && a.ino === b.ino && a.dev === b.dev;
}

/** Whether the process that wrote the lock still runs: alive, not this one (it waits), older than the file. */
function holds(file: string, pid: number | undefined): boolean {
  if (!pid || pid === process.pid || !isAlive(pid)) return false;
  const started = startedAtMs(pid);
  return started === undefined || started <= Date.now() - ageMs(file) + 1_000;
}

/**
 * When a process started (Linux: the boot time in /proc/stat plus field 22 of /proc/PID/stat, in
 * clock ticks of 1/100 s, which is what Linux uses on every architecture Node runs on); undefined
 * where it cannot be told.
 */
function startedAtMs(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const ticks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    const boot = Number(/^btime (\d+)$/m.exec(fs.readFileSync('/proc/stat', 'utf8'))?.[1]);
    return Number.isFinite(ticks) && boot > 0 ? boot * 1000 + ticks * 10 : undefined;
  } catch {
    return undefined;
  }
}

function ageMs(file: string): number {
  try {
    return Date.now() - fs.statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}
