/*
 * mailauth's SPF check parses each ip4:/ip6: range of the sender's record with ipaddr.js, for
 * every post, and ipaddr.parseCIDR() tries the IPv6 form first: an IPv4 range costs an error
 * thrown and caught (61 µs a post on the ingest bench, 7% of the listener's CPU, for one range).
 * The same ranges come back post after post (a provider's record, an include chain), so their
 * parsed forms are kept here, for the ipaddr.js that mailauth itself loads.
 */

import { createRequire } from 'node:module';

type ParseCidr = (range: string) => unknown;

/** Parsed ranges kept; past this many, the map starts again (a sender's record has a few dozen). */
const MAX_RANGES = 4096;

let installed = false;

/** Makes mailauth's ipaddr.parseCIDR() remember what it parsed. Idempotent. */
export function rememberSpfRanges(): void {
  if (installed) return;
  installed = true;
  // The ipaddr.js mailauth resolves, whichever copy npm gave it.
  const fromMailauth = createRequire(createRequire(import.meta.url).resolve('mailauth'));
  const ipaddr = fromMailauth('ipaddr.js') as { parseCIDR: ParseCidr };
  const parse = ipaddr.parseCIDR;
  const known = new Map<string, unknown>();
  ipaddr.parseCIDR = (range: string) => {
    let parsed = known.get(range);
    if (parsed === undefined) {
      // A range that does not parse throws, as before, and is not kept.
      parsed = parse(range);
      if (known.size >= MAX_RANGES) known.clear();
      known.set(range, parsed);
    }
    // Shared between posts: mailauth only reads it (address.match(range)).
    return parsed;
  };
}
