/*
 * Whether this process is ready for traffic (/healthz?ready; docs/operations.md): the database
 * answers, every migration in sql/ is applied, and no PostgreSQL upgrade is under way. Each check
 * has its own deadline and they run together, so a stuck database makes an answer of "not ready"
 * within CHECK_MS, never a request that hangs.
 */

import type pg from 'pg';
import { within } from '../deadline.ts';
import { migrationState } from '../db/migrate.ts';
import { ping } from '../db/pool.ts';
import { upgradeInProgress } from '../db/upgrade-marker.ts';
import { log } from '../log.ts';
import { RepeatedFailures } from '../repeated-failures.ts';

/** The deadline of each check: a load balancer's probe typically waits 5 s or less. */
export const CHECK_MS = 2_000;

/** Probes every few seconds during an outage: each failing check logged once, summed up, and when it passes again. */
const failures = new RepeatedFailures(log);

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
      const { pending } = await migrationState(pool, CHECK_MS);
      return pending.length === 0 ? 'ok' : `${pending.length} not applied: ${pending.join(', ')}`;
    },
    upgrade: async () => {
      const marker = await upgradeInProgress(dataDir);
      return marker === null ? 'ok' : `in progress: ${marker}`;
    },
  };
  const names = Object.keys(checks) as CheckName[];
  const results = await Promise.all(
    names.map((name) => within(checks[name](), CHECK_MS, `the ${name} check`).then((result) => {
      failures.ok(`ready:${name}`);
      return result;
    }, (err: Error) => {
      failures.failed(`ready:${name}`, err, 'readiness check failed', { check: name }, 'warn');
      return `failed: ${healthReason(err)}`;
    })),
  );
  const out = Object.fromEntries(names.map((name, i) => [name, results[i]])) as Record<CheckName, string>;
  return { ready: results.every((r) => r === 'ok'), checks: out };
}

/**
 * What a health answer says of a failure: its kind, not its text. The text of a database error can
 * name internal hosts and addresses (`connect ECONNREFUSED 10.0.0.5:5432`, `getaddrinfo ENOTFOUND
 * db.internal`) to whoever reaches /healthz; the caller logs it whole.
 */
export function healthReason(err: unknown): string {
  const e = err as { code?: string; message?: string } | null;
  const code = e?.code ?? '';
  const message = e?.message ?? '';
  // Our own deadlines (within) and pg's query_timeout say only what did not answer.
  if (code === 'ETIMEOUT' || /^Query read timeout$/.test(message)) return message;
  if (['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ECONNRESET', 'EPIPE'].includes(code)) return 'cannot reach the database';
  if (code.startsWith('28')) return 'the database refused the login';
  if (code === '57P03' || code === '57P01') return 'the database is starting up or shutting down';
  if (code === '53300') return 'the database has no connection to spare';
  if (/Connection terminated/i.test(message)) return 'the connection to the database was lost';
  return 'an error (see the log)';
}

/**
 * /healthz without ?ready: the process is up and reaches its database within CHECK_MS. The status
 * and body both listeners answer with (the web app's, and METRICS_PORT's: src/metrics-server.ts).
 */
export async function liveness(pool: pg.Pool): Promise<{ status: 200 | 503; body: { status: 'ok' | 'error'; database: string } }> {
  try {
    await within(ping(pool, CHECK_MS), CHECK_MS, 'the database');
    failures.ok('live');
    return { status: 200, body: { status: 'ok', database: 'ok' } };
  } catch (err) {
    failures.failed('live', err, 'health check failed', {}, 'warn');
    return { status: 503, body: { status: 'error', database: healthReason(err) } };
  }
}
