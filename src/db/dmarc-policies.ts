/* DMARC policies of authors' domains, cached in PostgreSQL so every instance shares one lookup. */

import type { Queryable } from './pool.ts';

export type DmarcPolicy = 'none' | 'quarantine' | 'reject';

/**
 * The cached policy, if it is recent enough: `recordSeconds` for a domain that publishes a
 * record, `noRecordSeconds` for one that did not (a record published since should soon count).
 */
export async function cachedDmarcPolicy(db: Queryable, domain: string, recordSeconds: number, noRecordSeconds: number): Promise<DmarcPolicy | null> {
  const { rows } = await db.query<{ policy: DmarcPolicy }>(
    `select policy from dmarc_policies
      where domain = $1 and fetched_at > now() - make_interval(secs => case when has_record then $2::int else $3::int end)`,
    [domain, recordSeconds, noRecordSeconds],
  );
  return rows[0]?.policy ?? null;
}

export async function storeDmarcPolicy(db: Queryable, domain: string, policy: DmarcPolicy, hasRecord: boolean): Promise<void> {
  await db.query(
    `insert into dmarc_policies (domain, policy, has_record) values ($1, $2, $3)
     on conflict (domain) do update set policy = excluded.policy, has_record = excluded.has_record, fetched_at = now()`,
    [domain, policy, hasRecord],
  );
}
