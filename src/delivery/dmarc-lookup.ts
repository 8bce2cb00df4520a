import { cachedDmarcPolicy, storeDmarcPolicy } from '../db/dmarc-policies.ts';
import type { Queryable } from '../db/pool.ts';
import type { Logger } from '../log.ts';
import { organisationalDomain, policyOf, type DmarcLookup } from '../mail/dmarc.ts';
import { resolvers } from '../dns.ts';

/** A published policy is kept a day; "no record" an hour, so a domain that starts publishing one is soon seen. */
export const RECORD_CACHE_SECONDS = 24 * 3600;
export const NO_RECORD_CACHE_SECONDS = 3600;

/**
 * The DMARC policy an author's domain publishes, from the PostgreSQL cache (shared by every
 * worker) or DNS: `_dmarc.domain`, then the organisational domain (Public Suffix List).
 * A lookup that fails (SERVFAIL, timeout) is 'temperror' and not cached: copies are then
 * mitigated, as Mailman does, since the domain may well publish p=reject.
 */
export async function dmarcPolicyFor(db: Queryable, domain: string, log: Logger): Promise<DmarcLookup> {
  const d = domain.toLowerCase().replace(/\.$/, '');
  const cached = await cachedDmarcPolicy(db, d, RECORD_CACHE_SECONDS, NO_RECORD_CACHE_SECONDS);
  if (cached) return cached;
  let record: string | null;
  let fromOrg = false;
  try {
    record = await lookup(`_dmarc.${d}`);
    const org = organisationalDomain(d);
    if (!record && org !== d) {
      record = await lookup(`_dmarc.${org}`);
      fromOrg = true;
    }
  } catch (err) {
    log.warn({ err, domain: d }, 'DMARC lookup failed; the copies are mitigated as for p=reject');
    return 'temperror';
  }
  const policy = policyOf(record, fromOrg);
  await storeDmarcPolicy(db, d, policy, record !== null);
  return policy;
}

/** The one DMARC record at `name`, null when there is none (NXDOMAIN, no TXT, none or several v=DMARC1). */
async function lookup(name: string): Promise<string | null> {
  try {
    const records = (await resolvers().txt(name)).map((parts) => parts.join('').trim()).filter((r) => /^v=DMARC1\b/i.test(r));
    return records.length === 1 ? records[0] : null;
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENOTFOUND' || code === 'ENODATA') return null;
    throw err;
  }
}
