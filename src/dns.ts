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

const system: Resolvers = {
  mx: (domain) => resolver.resolveMx(domain),
  txt: (name) => resolver.resolveTxt(name),
  resolve: (name, rrtype) => resolver.resolve(name, rrtype) as Promise<unknown[]>,
  reverse: (ip) => resolver.reverse(ip),
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
}
