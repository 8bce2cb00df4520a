/* DMARC policies of authors' domains, cached in PostgreSQL so every instance shares one lookup. */

import type { Queryable } from './pool.ts';

export type DmarcPolicy = 'none' | 'quarantine' | 'reject';

export async function cachedDmarcPolicy(db: Queryable, domain: string, maxAgeSeconds: number): Promise<DmarcPolicy | null> {
  const { rows } = await db.query<{ policy: DmarcPolicy }>(
    `select policy from dmarc_policies where domain = $1 and fetched_at > now() - make_interval(secs => $2)`,
    [domain, maxAgeSeconds],
  );
  return rows[0]?.policy ?? null;
}

export async function storeDmarcPolicy(db: Queryable, domain: string, policy: DmarcPolicy): Promise<void> {
  await db.query(
    `insert into dmarc_policies (domain, policy) values ($1, $2)
     on conflict (domain) do update set policy = excluded.policy, fetched_at = now()`,
    [domain, policy],
  );
}
