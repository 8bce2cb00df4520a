/*
 * DMARC records (RFC 7489), as far as a list needs them: does the author's domain ask receivers
 * to reject or quarantine mail that fails? Then a list copy whose signature no longer verifies
 * (subject prefix, footer) must not keep the author's From.
 */

export type DmarcPolicy = 'none' | 'quarantine' | 'reject';

export function parseDmarc(record: string): Map<string, string> {
  const tags = new Map<string, string>();
  for (const part of record.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0) tags.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).trim().toLowerCase());
  }
  return tags;
}

/** The policy that applies; `fromOrganisation` when the record came from the parent domain (sp= then). */
export function policyOf(record: string | null, fromOrganisation: boolean): DmarcPolicy {
  if (!record) return 'none';
  const tags = parseDmarc(record);
  if (tags.get('v') !== 'dmarc1') return 'none';
  const p = (fromOrganisation ? tags.get('sp') ?? tags.get('p') : tags.get('p')) ?? 'none';
  if (tags.get('pct') === '0') return 'none';
  return p === 'reject' || p === 'quarantine' ? p : 'none';
}

/** Whether to rewrite From for an author whose domain publishes this policy. */
export function needsFromRewrite(policy: DmarcPolicy): boolean {
  return policy === 'reject' || policy === 'quarantine';
}
