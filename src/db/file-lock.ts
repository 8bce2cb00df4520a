/*
 * A lock between the listkeeper processes that share DATA_DIR: the embedded server's start and
 * stop (embedded.ts) and its upgrade (embedded-upgrade.ts). It is a file created exclusively that
 * names its holder's pid. The kernel does not free it, so one left by a process that died is taken
 * over, and so is one older than `staleMs` (for a holder whose work is bounded). A live pid alone
 * does not say the holder lives: after a restart (a container's, above all) it is another
 * process's, often the very one now waiting; a process that started after the file was written
 * did not write it.
 */

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
  for (let said = false; ; ) {
    try {
      fs.writeFileSync(file, String(process.pid), { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        // Made but not written (a full disk): an empty lock would name no one.
        try {
          fs.rmSync(file, { force: true });
        } catch {
          // not ours to remove, or nothing to remove
        }
        throw new Error(`cannot take the lock ${file}: ${(err as Error).message}`, { cause: err });
      }
    }
    const holder = readOwner(file);
    if (!holds(file, holder) || ageMs(file) > (opts.staleMs ?? Infinity)) {
      fs.rmSync(file, { force: true });
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
    fs.rmSync(file, { force: true });
  }
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
