/*
 * What `listkeeper doctor` reads of the PostgreSQL server: its version, and the settings that
 * listkeeper's guarantees depend on, as this session sees them (role and database settings
 * included, so `alter database … set synchronous_commit` shows).
 */

import { type Queryable, withTimeout } from './pool.ts';

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
