/*
 * DMARC records (RFC 7489), as far as a list needs them: may a receiver reject or quarantine a
 * copy that keeps the author's From, now that the author's signature no longer verifies (subject
 * prefix, footer) and the list's own domain is not aligned with it? Then the list mitigates.
 */

import { getDomain } from 'tldts';
import { asciiDomain } from './address.ts';

export type DmarcPolicy = 'none' | 'quarantine' | 'reject';

/** A lookup's outcome: a policy, or a DNS failure (which mitigates, as Mailman does: fail closed). */
export type DmarcLookup = DmarcPolicy | 'temperror';

export function parseDmarc(record: string): Map<string, string> {
  const tags = new Map<string, string>();
  for (const part of record.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0) tags.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).trim().toLowerCase());
  }
  return tags;
}

/** One step down, what RFC 7489 §6.6.4 gives a message that pct did not select. */
const LOWER: Record<DmarcPolicy, DmarcPolicy> = { reject: 'quarantine', quarantine: 'none', none: 'none' };

/**
 * The harshest treatment a failing message may get under this record: the policy that list
 * mitigation has to plan for. `fromOrganisation` when the record came from the organisational
 * domain (sp= applies then).
 *
 * pct (RFC 7489 §6.6.4): a message pct does not select gets the next lower policy, so with
 * p=reject every message may be rejected (pct > 0) or at least quarantined (pct=0): mitigate;
 * with p=quarantine a message may be quarantined whenever pct > 0: mitigate; p=quarantine with
 * pct=0 is p=none for every message. A list cannot know which messages a receiver's sampling
 * selects, so any chance of reject or quarantine counts. DMARCbis' t=y (testing) is pct=0.
 */
export function policyOf(record: string | null, fromOrganisation: boolean): DmarcPolicy {
  if (!record) return 'none';
  const tags = parseDmarc(record);
  if (tags.get('v') !== 'dmarc1') return 'none';
  const asked = (fromOrganisation ? tags.get('sp') ?? tags.get('p') : tags.get('p')) ?? 'none';
  const p: DmarcPolicy = asked === 'reject' || asked === 'quarantine' ? asked : 'none';
  // An invalid pct is ignored (the default, 100, applies).
  const pctTag = tags.get('pct');
  const pct = pctTag !== undefined && /^\d{1,3}$/.test(pctTag) && Number(pctTag) <= 100 ? Number(pctTag) : 100;
  return pct === 0 || tags.get('t') === 'y' ? LOWER[p] : p;
}

/** Whether copies from an author with this lookup outcome need mitigation (munge_from, wrap_message). */
export function needsMitigation(outcome: DmarcLookup): boolean {
  return outcome === 'reject' || outcome === 'quarantine' || outcome === 'temperror';
}

/**
 * The organisational domain (RFC 7489 §3.2) from the Public Suffix List, as mailauth finds it
 * (tldts, ICANN and private sections): mail.gmx.de → gmx.de, foo.bar.co.uk → bar.co.uk. A name
 * that is itself a public suffix, or not a domain, is its own.
 */
export function organisationalDomain(domain: string): string {
  const d = domain.toLowerCase().replace(/\.$/, '');
  return getDomain(d, { allowIcannDomains: true, allowPrivateDomains: true }) ?? d;
}

/** A domain as compared: xn-- labels, lower case, without a final dot (a From may name it in Unicode, a d= in A-labels). */
function comparable(d: string): string {
  return asciiDomain(d.toLowerCase().replace(/\.$/, ''));
}

/** Whether two domains are the same (strict alignment, RFC 7489 §3.1): in any case, in Unicode or as xn-- labels. */
export function sameDomain(a: string | null, b: string | null): boolean {
  return !!a && !!b && comparable(a) === comparable(b);
}

/**
 * Relaxed alignment (RFC 7489 §3.1): the two domains share their organisational domain, in any
 * case, in Unicode or as xn-- labels (as mailauth compares them: a From of bücher.example signed
 * d=xn--bcher-kva.example passes its DMARC).
 */
export function sameOrganisation(a: string, b: string): boolean {
  return organisationalDomain(comparable(a)) === organisationalDomain(comparable(b));
}
