/*
 * The embedded server's shared_buffers against its data (db/embedded-settings.ts): a `doctor`
 * finding, and the note `listkeeper import` prints after an import that outgrew them.
 */

import path from 'node:path';
import type pg from 'pg';
import { within } from '../deadline.ts';
import { clusterDataBytes, sharedBuffersMb } from '../db/embedded-settings.ts';
import { fail, ok, QUERY_MS, warn, type Finding } from './doctor-findings.ts';

/**
 * The embedded server sizes shared_buffers for its data when it starts
 * (db/embedded-settings.ts); an archive that has grown since asks for a restart to get more.
 */
export async function embeddedBuffersFinding(pool: pg.Pool, dataDir: string): Promise<Finding> {
  try {
    const { rows } = await within(pool.query<{ mb: number; source: string }>(
      `select setting::bigint * current_setting('block_size')::int / 1048576 as mb, source
         from pg_settings where name = 'shared_buffers'`), QUERY_MS, 'the shared_buffers query');
    // The data measured as a start measures it, so that a restart gives what this finding says.
    return sharedBuffersFinding(Number(rows[0].mb), rows[0].source, clusterDataBytes(path.join(dataDir, 'postgres')));
  } catch (err) {
    return fail('shared_buffers', `cannot read the embedded server's shared_buffers: ${(err as Error).message}`, 'check the database connection');
  }
}

/** source: pg_settings.source ("command line" when listkeeper chose it, "configuration file" after ALTER SYSTEM). */
export function sharedBuffersFinding(mb: number, source: string, dataBytes: number): Finding {
  const data = `${Math.round(dataBytes / 1048576)} MB of data`;
  if (source !== 'command line') return ok('shared_buffers', `shared_buffers ${mb} MB, set in the server's configuration (${source}); ${data}`);
  const wanted = sharedBuffersMb(dataBytes);
  const what = `shared_buffers ${mb} MB, chosen for the data when the embedded server started; it holds ${data} now`;
  if (wanted > mb) return warn('shared_buffers', `${what}, for which it would choose ${wanted} MB`, 'restart listkeeper (or the embedded server, docs/operations.md) at a quiet moment to give it the larger size');
  return ok('shared_buffers', what);
}
