/*
 * The embedded server's settings for a small machine it shares with listkeeper, chosen as it
 * starts (db/embedded.ts), and the rule `listkeeper doctor` checks them against.
 */

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * Settings for a server that shares a small machine with listkeeper (PostgreSQL's defaults assume
 * a machine of its own). shared_buffers follows the data (sharedBuffersMb): every backend that
 * touches a buffer maps it, and the kernel's page cache keeps the rest of the data just as well
 * without counting against the processes. max_connections follows the pools (src/db/database.ts)
 * instead of a fixed 200 (each slot is shared memory for its locks). work_mem stays modest (4 MB
 * per sort or hash, the default), maintenance_work_mem (VACUUM, CREATE INDEX) 32 MB, and two
 * autovacuum workers rather than three. What the operator set with ALTER SYSTEM (postgresql.auto.conf) wins over any of these.
 */
export function applianceSettings(clusterDir: string, maxConnections: number): string[] {
  const settings: Record<string, string> = {
    shared_buffers: `${sharedBuffersMb(clusterDataBytes(clusterDir))}MB`,
    max_connections: String(maxConnections),
    work_mem: '4MB',
    maintenance_work_mem: '32MB',
    autovacuum_max_workers: '2',
  };
  const operators = operatorSettings(clusterDir);
  return Object.entries(settings).filter(([name]) => !operators.has(name)).map(([name, value]) => `${name}=${value}`);
}

/**
 * shared_buffers for a server starting on dataBytes of data: a quarter of it, in steps of 8 MB,
 * from 16 MB up to an eighth of the machine's memory. A 10,000-message archive (about 120 MB with
 * the template databases) gets 32 MB. An eighth (16 MB) held the archive pages' rates, but not a
 * search: twenty searches for two common words each read a few hundred heap pages, about 25 MB
 * together, and with 16 MB every one read 50-100 pages again from the kernel's cache, a system
 * call each (6.5 ms at p50 against 2.2 with 32 MB; docs/benchmarks.md, tenth session). A million
 * messages (5 GB) gets 1.25 GB on a machine of 10 GB or more: with the 64 MB that was the ceiling
 * before, the pages of twenty rare words no longer fitted and every search read them again from
 * the kernel's cache (p95 32-51 ms against 11-28 ms at 640 MB: docs/scaling.md). The ceiling
 * leaves the rest of a small machine to listkeeper and the kernel's cache. Chosen at each start,
 * so a server started small grows into its archive (or its outbox: docs/benchmarks.md
 * "shared_buffers by the size of the data") at its next start.
 */
export function sharedBuffersMb(dataBytes: number, memoryBytes = os.totalmem()): number {
  const quarter = Math.ceil(dataBytes / 4 / (8 * 1048576)) * 8;
  const ceiling = Math.max(16, Math.floor(memoryBytes / 8 / (8 * 1048576)) * 8);
  return Math.min(ceiling, Math.max(16, quarter));
}

/** Bytes in the cluster's databases (base/), from the files' sizes; read before the server starts. */
export function clusterDataBytes(clusterDir: string): number {
  let total = 0;
  const walk = (dir: string) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return; // not there yet (a new cluster) or not ours to read: counts as nothing
    }
    for (const e of entries) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) total += fs.statSync(p, { throwIfNoEntry: false })?.size ?? 0;
    }
  };
  walk(path.join(clusterDir, 'base'));
  return total;
}

/** The parameters postgresql.auto.conf sets (ALTER SYSTEM), by name in lower case. */
function operatorSettings(clusterDir: string): Set<string> {
  let text = '';
  try {
    text = fs.readFileSync(path.join(clusterDir, 'postgresql.auto.conf'), 'utf8');
  } catch {
    // none yet
  }
  return new Set(text.split('\n').map((line) => /^\s*([a-z_.]+)\s*=/i.exec(line)?.[1].toLowerCase()).filter((n): n is string => !!n));
}
