/*
 * Whether this process is ready for traffic (/healthz?ready; docs/operations.md): the database
 * answers, every migration in sql/ is applied, and no PostgreSQL upgrade is under way. Each check
 * has its own deadline and they run together, so a stuck database makes an answer of "not ready"
 * within CHECK_MS, never a request that hangs.
 */

import type pg from 'pg';
import { within } from '../deadline.ts';
import { pendingMigrations } from '../db/migrate.ts';
import { ping } from '../db/pool.ts';
import { upgradeInProgress } from '../db/upgrade-marker.ts';

/** The deadline of each check: a load balancer's probe typically waits 5 s or less. */
export const CHECK_MS = 2_000;

export type CheckName = 'database' | 'migrations' | 'upgrade';

export interface Readiness {
  ready: boolean;
  /** 'ok', or what is wrong */
  checks: Record<CheckName, string>;
}

export async function readiness(pool: pg.Pool, dataDir: string): Promise<Readiness> {
  const checks: Record<CheckName, () => Promise<string>> = {
    database: async () => {
      await ping(pool, CHECK_MS);
      return 'ok';
    },
    migrations: async () => {
      const pending = await pendingMigrations(pool, CHECK_MS);
      return pending.length === 0 ? 'ok' : `${pending.length} not applied: ${pending.join(', ')}`;
    },
    upgrade: async () => {
      const marker = await upgradeInProgress(dataDir);
      return marker === null ? 'ok' : `in progress: ${marker}`;
    },
  };
  const names = Object.keys(checks) as CheckName[];
  const results = await Promise.all(
    names.map((name) => within(checks[name](), CHECK_MS, `the ${name} check`).catch((err: Error) => `failed: ${err.message}`)),
  );
  const out = Object.fromEntries(names.map((name, i) => [name, results[i]])) as Record<CheckName, string>;
  return { ready: results.every((r) => r === 'ok'), checks: out };
}
