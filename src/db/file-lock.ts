/*
 * A lock between the listkeeper processes that share DATA_DIR: the embedded server's start and
 * stop (embedded.ts) and its upgrade (embedded-upgrade.ts). It is a file created exclusively that
 * names its holder's pid; the kernel does not free it, so one left by a process that died is
 * taken over, and so is one older than `staleMs` (for a holder whose work is bounded: by then
 * its pid may belong to another process, after a reboot say).
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

export async function withFileLock<T>(file: string, opts: FileLockOptions, fn: () => Promise<T>): Promise<T> {
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
    if (!isAlive(holder) || ageMs(file) > (opts.staleMs ?? Infinity)) {
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

function ageMs(file: string): number {
  try {
    return Date.now() - fs.statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}
