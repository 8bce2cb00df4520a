/*
 * The DNS lookups delivery makes (MX hosts for direct delivery, DMARC policies of authors'
 * domains). Tests replace them with setResolvers(): DNS is the one outside service we stub.
 */

import dns from 'node:dns';

export interface Resolvers {
  mx(domain: string): Promise<{ exchange: string; priority: number }[]>;
  /** TXT records as returned by dns.promises.resolveTxt: each record is a list of strings */
  txt(name: string): Promise<string[][]>;
}

// Every network wait has a deadline: 5 s per query, two tries (c-ares' defaults allow minutes).
const resolver = new dns.promises.Resolver({ timeout: 5_000, tries: 2 });

const system: Resolvers = {
  mx: (domain) => resolver.resolveMx(domain),
  txt: (name) => resolver.resolveTxt(name),
};

let current: Resolvers = system;

export function resolvers(): Resolvers {
  return current;
}

/** Replaces some lookups (tests); call with no argument to go back to the system resolver. */
export function setResolvers(r?: Partial<Resolvers>): void {
  current = r ? { ...system, ...r } : system;
}

