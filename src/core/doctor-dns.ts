/*
 * The DNS records of the list domains, as `listkeeper doctor` checks them (through src/dns.ts,
 * like every lookup): MX (mail reaches the lists), SPF and DMARC (receivers of bulk mail require
 * both, with DKIM), and each list's DKIM record holding the public half of its key.
 */

import type { Config } from '../config.ts';
import { within } from '../deadline.ts';
import type { ListRow } from '../db/lists.ts';
import { resolvers } from '../dns.ts';
import { splitAddress } from '../mail/address.ts';
import { dkimTxtValue, listKey } from '../mail/list-signing.ts';
import { fail, ok, warn, type Finding } from './doctor-findings.ts';
import { currentListKey } from './list-dkim.ts';

/** Each lookup's deadline: src/dns.ts allows two tries of 5 s. */
const LOOKUP_MS = 12_000;

export async function dnsFindings(lists: ListRow[], cfg: Config): Promise<Finding[]> {
  const domains = [...new Set(lists.map((l) => splitAddress(l.address)!.domain))].sort();
  if (domains.length === 0) return [ok('dns', 'no lists yet: no DNS records to check')];
  const perDomain = await Promise.all(domains.map((d) => Promise.all([mxFinding(d, cfg), spfFinding(d, cfg), dmarcFinding(d)])));
  const dkim = await Promise.all(lists.map(dkimFinding));
  return [...perDomain.flat(), ...dkim];
}

/** A name with no such record is an empty answer; any other failure (a timeout, SERVFAIL) throws. */
async function lookup<T>(what: string, query: () => Promise<T[]>): Promise<T[]> {
  try {
    return await within(query(), LOOKUP_MS, `the DNS lookup of ${what}`);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENOTFOUND' || code === 'ENODATA') return [];
    throw err;
  }
}

/** TXT records as single strings (a record's strings joined, as RFC 7208 and 6376 read them). */
async function txt(name: string): Promise<string[]> {
  return (await lookup(`${name} TXT`, () => resolvers().txt(name))).map((parts) => parts.join(''));
}

function lookupFailed(check: string, name: string, err: unknown): Finding {
  return fail(check, `the DNS lookup of ${name} failed: ${(err as Error).message}`, 'check the resolver (DNS_SERVERS, else the system\'s) and the domain\'s name servers; run doctor again');
}

async function mxFinding(domain: string, cfg: Config): Promise<Finding> {
  try {
    const mx = (await lookup(`${domain} MX`, () => resolvers().mx(domain))).sort((a, b) => a.priority - b.priority);
    if (mx.length === 0) {
      return fail('dns.mx', `${domain} has no MX record: mail to its lists goes nowhere`, `publish ${domain}. IN MX 10 ${cfg.heloName}. (the host whose port 25 reaches listkeeper's SMTP listener, or the MTA in front of it)`);
    }
    return ok('dns.mx', `${domain} MX ${mx.map((m) => `${m.priority} ${m.exchange}`).join(', ')}`);
  } catch (err) {
    return lookupFailed('dns.mx', `${domain} MX`, err);
  }
}

async function spfFinding(domain: string, cfg: Config): Promise<Finding> {
  try {
    const spf = (await txt(domain)).filter((t) => /^v=spf1(\s|$)/i.test(t));
    const example = `${domain}. IN TXT "v=spf1 a:${cfg.heloName} ~all" (naming the hosts that send the lists' mail: this server, or RELAY_URL's relay)`;
    if (spf.length === 0) return fail('dns.spf', `${domain} has no SPF record: receivers of bulk mail refuse or junk the lists' copies`, `publish ${example}`);
    if (spf.length > 1) return fail('dns.spf', `${domain} has ${spf.length} SPF records, which makes SPF fail (RFC 7208 permerror)`, `keep one: ${example}`);
    return ok('dns.spf', `${domain} SPF "${spf[0]}"`);
  } catch (err) {
    return lookupFailed('dns.spf', `${domain} TXT`, err);
  }
}

async function dmarcFinding(domain: string): Promise<Finding> {
  const name = `_dmarc.${domain}`;
  try {
    const dmarc = (await txt(name)).filter((t) => /^v=DMARC1\s*(;|$)/i.test(t));
    if (dmarc.length !== 1) {
      const what = dmarc.length === 0 ? `${domain} has no DMARC record` : `${domain} has ${dmarc.length} DMARC records, which receivers ignore`;
      return fail('dns.dmarc', `${what}: receivers of bulk mail require one`, `publish ${name}. IN TXT "v=DMARC1; p=none; rua=mailto:postmaster@${domain}"`);
    }
    return ok('dns.dmarc', `${domain} DMARC "${dmarc[0]}"`);
  } catch (err) {
    return lookupFailed('dns.dmarc', `${name} TXT`, err);
  }
}

/**
 * The list's DKIM record must hold the public half of the key it signs with; a list without a key
 * is a warning (its copies go out unsigned, which big receivers now refuse from bulk senders).
 * Every list's finding is made here, after the domains' MX, SPF and DMARC, so that the dns.dkim
 * findings stand together in the order docs/command-line.md shows.
 */
async function dkimFinding(list: ListRow): Promise<Finding> {
  let key: ReturnType<typeof currentListKey>;
  let expected: string | null;
  try {
    key = currentListKey(list);
    if (!key) {
      return warn('dns.dkim', `${list.address} has no DKIM key: its copies go out unsigned`,
        `run "listkeeper list dkim ${list.address} --generate" and publish the record it prints`);
    }
    // The check delivery makes (listKey): a key it will not sign with holds the list's copies.
    listKey(key.domain, key.selector, list.dkim_private_key!);
    expected = publicKeyTag(dkimTxtValue(list.dkim_private_key!));
  } catch (err) {
    // A key damaged in the database (a restore, a hand edit: list set refuses one), or one an older
    // release took (RSA over 4,096 bits), is this list's finding; thrown, it ended the whole doctor
    // run with no finding at all.
    return fail('dns.dkim', `${list.address} has a DKIM private key that cannot be used (${(err as Error).message}): its copies wait in the queue until it is replaced`,
      `run "listkeeper list dkim ${list.address} --generate" and publish the record it prints`);
  }
  const name = `${key.selector}._domainkey.${key.domain}`;
  try {
    const records = (await txt(name)).filter((t) => publicKeyTag(t) !== null);
    if (records.some((t) => publicKeyTag(t) === expected)) return ok('dns.dkim', `${list.address} DKIM record ${name} holds its key`);
    const what = records.length === 0
      ? `${list.address} signs with selector ${key.selector}, but ${name} has no DKIM record: its copies fail DKIM`
      : `the DKIM record at ${name} does not hold ${list.address}'s public key: its copies fail DKIM`;
    return fail('dns.dkim', what, `publish ${key.record}`);
  } catch (err) {
    return lookupFailed('dns.dkim', `${name} TXT`, err);
  }
}

/** The p= tag of a DKIM key record (RFC 6376 3.6.1), its whitespace removed; null when there is none. */
function publicKeyTag(record: string): string | null {
  for (const tag of record.split(';')) {
    const eq = tag.indexOf('=');
    if (eq > 0 && tag.slice(0, eq).trim() === 'p') return tag.slice(eq + 1).replace(/\s+/g, '');
  }
  return null;
}
