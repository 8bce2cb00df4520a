/*
 * Every DNS lookup listkeeper makes: MX hosts for direct delivery, the TXT records of SPF, DKIM,
 * DMARC and ARC, what mailauth asks for, and the ingest client's reverse name. DNS is the one outside service tests stub: in the
 * process with setResolvers(), or across processes with DNS_SERVERS pointing at a stub server.
 */

import dns from 'node:dns';

export interface Resolvers {
  mx(domain: string): Promise<{ exchange: string; priority: number }[]>;
  /** TXT records as returned by dns.promises.resolveTxt: each record is a list of strings */
  txt(name: string): Promise<string[][]>;
  /**
   * Any record type, as dns.promises.resolve(name, rrtype) answers: the resolver mailauth calls
   * (SPF asks for TXT, A, AAAA, MX and PTR; DKIM, DMARC and ARC for TXT).
   */
  resolve(name: string, rrtype: string): Promise<unknown[]>;
  /** PTR names of an address (the ingest listener's client, for its Received line) */
  reverse(ip: string): Promise<string[]>;
}

// Every network wait has a deadline: 5 s per query, two tries (c-ares' defaults allow minutes).
const resolver = new dns.promises.Resolver({ timeout: 5_000, tries: 2 });

/**
 * Answers kept a minute in each process: every post asks the same few names (its sender's SPF,
 * DMARC and DKIM key records, ARC keys), and c-ares keeps nothing. Without it each post waited on
 * several round trips to the resolver (a third of ingest's rate in the benchmark). "No such name"
 * and "no such record" are kept as answers too; a timeout or a server failure is not kept.
 */
const CACHE_MS = 60_000;
const CACHE_ENTRIES = 10_000;
const cache = new Map<string, { until: number; answer: Promise<unknown> }>();

function cached<T>(key: string, lookup: () => Promise<T>): Promise<T> {
  const now = performance.now();
  const hit = cache.get(key);
  if (hit && hit.until > now) return hit.answer as Promise<T>;
  const answer = lookup();
  if (cache.size >= CACHE_ENTRIES) cache.delete(cache.keys().next().value!);
  cache.set(key, { until: now + CACHE_MS, answer });
  // Only answers stay: a lookup that failed for now is asked again next time.
  answer.catch((err: { code?: string }) => {
    if (err?.code !== 'ENOTFOUND' && err?.code !== 'ENODATA' && cache.get(key)?.answer === answer) cache.delete(key);
  });
  return answer;
}

/** Forgets every kept answer (tests that change what a name answers, and useDnsServers). */
export function clearDnsCache(): void {
  cache.clear();
}

const system: Resolvers = {
  mx: (domain) => cached(`MX ${domain.toLowerCase()}`, () => resolver.resolveMx(domain)),
  txt: (name) => cached(`TXT ${name.toLowerCase()}`, () => resolver.resolveTxt(name)),
  resolve: (name, rrtype) => cached(`${rrtype} ${name.toLowerCase()}`, () => resolver.resolve(name, rrtype) as Promise<unknown[]>),
  reverse: (ip) => cached(`PTR ${ip}`, () => resolver.reverse(ip)),
};

let current: Resolvers = system;

export function resolvers(): Resolvers {
  return current;
}

/** Replaces some lookups (tests); call with no argument to go back to the system resolver. */
export function setResolvers(r?: Partial<Resolvers>): void {
  current = r ? { ...system, ...r } : system;
}

/** Sends every lookup to these servers (DNS_SERVERS: `host` or `host:port`, IPv6 as `[addr]:port`). */
export function useDnsServers(servers: string[]): void {
  if (servers.length > 0) resolver.setServers(servers);
  cache.clear();
}
