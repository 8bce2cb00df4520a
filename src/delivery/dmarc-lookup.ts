import { cachedDmarcPolicy, storeDmarcPolicy, type DmarcPolicy } from '../db/dmarc-policies.ts';
import type { Queryable } from '../db/pool.ts';
import type { Logger } from '../log.ts';
import { policyOf } from '../mail/dmarc.ts';
import { resolvers } from '../dns.ts';

const CACHE_SECONDS = 24 * 3600;

/**
 * The DMARC policy an author's domain publishes, from the PostgreSQL cache (shared by every
 * worker, a day old at most) or DNS: `_dmarc.domain`, then the organisational domain.
 * A lookup that fails is treated as "none" and not cached: the From header is then left alone.
 */
export async function dmarcPolicyFor(db: Queryable, domain: string, log: Logger): Promise<DmarcPolicy> {
  const d = domain.toLowerCase();
  const cached = await cachedDmarcPolicy(db, d, CACHE_SECONDS);
  if (cached) return cached;
  try {
    let record = await lookup(`_dmarc.${d}`);
    let fromOrg = false;
    const org = organisationalDomain(d);
    if (!record && org !== d) {
      record = await lookup(`_dmarc.${org}`);
      fromOrg = true;
    }
    const policy = policyOf(record, fromOrg);
    await storeDmarcPolicy(db, d, policy);
    return policy;
  } catch (err) {
    log.warn({ err, domain: d }, 'DMARC lookup failed');
    return 'none';
  }
}

async function lookup(name: string): Promise<string | null> {
  try {
    const records = (await resolvers().txt(name)).map((parts) => parts.join('').trim()).filter((r) => /^v=DMARC1\b/i.test(r));
    return records.length === 1 ? records[0] : null;
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENOTFOUND' || code === 'ENODATA' || code === 'ENOTIMP') return null;
    throw err;
  }
}

// Without the public suffix list: the last two labels, or three under a two-letter
// second-level like co.uk / com.au. Good enough for deciding whether to rewrite From.
function organisationalDomain(domain: string): string {
  const labels = domain.split('.');
  if (labels.length <= 2) return domain;
  const second = labels[labels.length - 2];
  const take = labels[labels.length - 1].length === 2 && (second.length <= 3 || ['gov', 'ac', 'co', 'com', 'net', 'org'].includes(second)) ? 3 : 2;
  return labels.slice(-take).join('.');
}
