/*
 * What `listkeeper doctor` reads of the PostgreSQL server: its version, and the settings that
 * listkeeper's guarantees depend on, as this session sees them (role and database settings
 * included, so `alter database … set synchronous_commit` shows).
 */

import { type Queryable, withTimeout } from './pool.ts';

/**
 * The oldest PostgreSQL major listkeeper runs on: the oldest it is tested with (Debian 12's 15;
 * the embedded server is the newest, 18). An external DATABASE_URL is never upgraded by
 * listkeeper: an older server is refused at start, before any migration touches it.
 */
export const OLDEST_SUPPORTED_MAJOR = 15;

/** Why a server of this version cannot be used, or null when it can. */
export function versionRefusal(versionNum: number, version: string): string | null {
  const major = Math.floor(versionNum / 10_000);
  if (major >= OLDEST_SUPPORTED_MAJOR) return null;
  return `PostgreSQL ${version} is older than ${OLDEST_SUPPORTED_MAJOR}, the oldest listkeeper supports (it is tested with ${OLDEST_SUPPORTED_MAJOR} and 18): upgrade the server`;
}

export interface ServerSettings {
  /** server_version_num, e.g. 150008 */
  versionNum: number;
  /** server_version, e.g. "15.8 (Debian 15.8-0+deb12u1)" */
  version: string;
  synchronousCommit: string;
  maxLocksPerTransaction: number;
  maxConnections: number;
  maxPreparedTransactions: number;
}

export async function serverSettings(db: Queryable, timeoutMs?: number): Promise<ServerSettings> {
  const { rows } = await db.query<ServerSettings>(
    withTimeout(
      `select current_setting('server_version_num')::int as "versionNum", current_setting('server_version') as version,
              current_setting('synchronous_commit') as "synchronousCommit",
              current_setting('max_locks_per_transaction')::int as "maxLocksPerTransaction",
              current_setting('max_connections')::int as "maxConnections",
              current_setting('max_prepared_transactions')::int as "maxPreparedTransactions"`,
      timeoutMs,
    ),
  );
  return rows[0];
}
