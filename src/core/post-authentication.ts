/*
 * How a post authenticates as it arrives: SPF for the envelope sender and the client's IP, DKIM,
 * DMARC and ARC, checked by mailauth with every lookup through src/dns.ts (so DNS_SERVERS and the
 * tests' stubs apply). The result says what each method found, whether SPF or DKIM passed for a
 * domain aligned with From, and the Authentication-Results value every copy carries. The
 * moderation rules (moderation-rules.ts, rule 'authentication') decide what follows from it.
 *
 * Bounded in time: a resolver that does not answer yields temperror results after
 * AUTH_CHECK_TIMEOUT_MS, and the post goes on; it is never stuck behind DNS, never lost.
 */

import { authenticate, dmarc as checkDmarc, type DMARCResult, type DNSResolver } from 'mailauth';
import { formatAuthHeaderRow } from 'mailauth/lib/tools.js';
import { resolvers } from '../dns.ts';
import { beforeDeadline } from '../deadline.ts';
import { normalizeEmail } from '../mail/address.ts';
import type { Logger } from '../log.ts';
import { fieldValue, headerFields, splitMessage, withFirstFields } from '../mail/header-block.ts';
import type { AuthChecks, Peer } from '../mail/post-checks.ts';
import type { CoreSettings } from './settings.ts';
import { rememberSpfRanges } from '../mail/spf-ranges.ts';
import { fasterDkimHeaderScan } from '../mail/dkim-header-end.ts';
import { withoutOverlongSignatures, type OverlongSignature } from '../mail/dkim-length.ts';
import { sameDomain, sameOrganisation } from '../mail/dmarc.ts';

// Two costs of mailauth's on every post, worked around where it loads (each file says how).
rememberSpfRanges();
fasterDkimHeaderScan();

export interface AuthInput {
  raw: Buffer;
  /** MAIL FROM; null for the null reverse-path (SPF then checks postmaster@HELO, as RFC 7208 §2.4 says) */
  envelopeFrom: string | null;
  /** the SMTP client; without its IP (not over SMTP, or behind Postfix without XFORWARD) SPF is not checked */
  peer: Peer | null;
  /** the address a login vouched for (a member's reply from the web, web/archive/reply.ts) */
  submittedBy?: string | null;
  /** the post's From, to compare with submittedBy */
  message?: { fromEmail: string };
  log: Logger;
}

type Settings = Pick<CoreSettings, 'heloName' | 'authCheckTimeoutMs'>;

/**
 * DKIM signatures checked on a post: the first (newest) ones, the others are not shown to mailauth.
 * It checks every signature, each with a DNS lookup and, per distinct l=, a hash of the whole body
 * in one turn of the event loop: 2,000 of them on a 2 MB post held the listener for 17 s. OpenDKIM
 * checks 3 (MaximumSignaturesToVerify), rspamd 5 (max_sigs).
 */
export const MAX_DKIM_SIGNATURES = 5;
type Outcome = Awaited<ReturnType<typeof authenticate>>;
/** A From domain DMARC was checked for, and how its record asks for alignment (relaxed when it has none or could not be read). */
interface FromDomain { domain: string; dkimStrict: boolean; spfStrict: boolean }
type Checked = Outcome & { froms: FromDomain[]; tooManyFrom: boolean };
const PASS = 'pass';

export async function authenticatePost(input: AuthInput, settings: Settings): Promise<AuthChecks> {
  // A post whose From a login vouched for is authenticated by that login (RFC 8601 auth=pass),
  // aligned as a DKIM pass would be; DNS has nothing to add.
  const vouched = input.submittedBy ? normalizeEmail(input.submittedBy) : null;
  if (vouched && input.message && normalizeEmail(input.message.fromEmail) === vouched) return loginAuth(vouched, settings.heloName);
  const started = performance.now();
  const budget = settings.authCheckTimeoutMs;
  // Lookups stop a little before the whole check does, so that mailauth records what it found
  // (a DKIM pass, a DMARC temperror) rather than the backstop's blanket temperror.
  const lookupsEnd = started + budget - Math.min(1_000, budget / 10);
  const resolve = resolvers().resolve;
  const resolver = (name: string, rrtype: string) => withDeadline(noBadNames(resolve(name, rrtype)), lookupsEnd, `${name}/${rrtype}`);
  // SPF judges the server that handed the post over: not a relay in front of us (LMTP without XFORWARD).
  const sender = input.peer && !input.peer.relay ? input.peer : null;
  const ip = sender?.ip || undefined;

  let timer: NodeJS.Timeout | undefined;
  const backstop = new Promise<null>((done) => (timer = setTimeout(() => done(null), budget)));
  try {
    const outcome = await Promise.race([
      checkPost(withFirstFields(input.raw, 'dkim-signature', MAX_DKIM_SIGNATURES), {
        ip,
        helo: sender?.helo || undefined,
        sender: input.envelopeFrom || undefined,
        mta: settings.heloName,
        resolver: resolver as DNSResolver,
      }),
      backstop,
    ]);
    if (!outcome) {
      input.log.warn({ ms: performance.now() - started }, 'authentication checks ran out of time: recorded as temperror');
      return timedOut(input, settings.heloName);
    }
    return summarise(outcome, settings.heloName, ip !== undefined);
  } catch (err) {
    // mailauth turns DNS trouble into results; anything else is a bug there or here, and must not
    // cost the post: it is recorded as a temporary error.
    input.log.error({ err }, 'authentication checks failed');
    return timedOut(input, settings.heloName);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * mailauth's checks, with DMARC done here rather than inside authenticate(): DMARC must not count
 * a DKIM pass that does not cover the whole body (partialSignatures), and authenticate() judges
 * DMARC before its caller sees the signatures. The same call as authenticate's otherwise.
 */
async function checkPost(raw: Buffer, opts: { ip?: string; helo?: string; sender?: string; mta: string; resolver: DNSResolver }): Promise<Checked> {
  // A signature whose l= passes the end of the body is not shown to mailauth (it prints a line to
  // stdout for one, in the middle of the JSON log): it is a permerror, recorded here.
  const { raw: shown, overlong } = withoutOverlongSignatures(raw);
  const o = await authenticate(shown, { ...opts, disableBimi: true, disableDmarc: true });
  if (overlong.length) o.dkim.results = [...(o.dkim.results ?? []).filter((r) => r.signingDomain), ...overlong.map(overlongResult)];
  partialSignatures(o.dkim.results ?? []);
  const spfDomains = o.spf && o.spf.status.result === PASS && o.spf.domain ? [o.spf.domain as string] : [];
  const dkimDomains = (o.dkim.results ?? []).filter((r) => r.status.result === PASS).map((r) => ({ id: r.id, domain: r.signingDomain }));
  // One verdict per From domain (mailauth judges a From of one address only, and gives none for
  // more): the harshest is the post's.
  const { froms, more } = fromDomains(o.dkim.headerFrom ?? []);
  if (more) return Object.assign(o, { dmarc: tooManyFromDomains(), froms: [], tooManyFrom: true });
  const verdicts = await Promise.all(froms.map(async (from) => {
    const verdict = await checkDmarc({ headerFrom: from, spfDomains, dkimDomains, arcResult: o.arc || undefined, resolver: opts.resolver });
    if (verdict) strictAlignment(verdict, from, spfDomains, dkimDomains.map((d) => d.domain));
    return verdict;
  }));
  o.dmarc = harshest(verdicts.filter((v) => v !== false));
  return Object.assign(o, {
    froms: froms.map((from, i) => {
      const alignment = verdicts[i] ? verdicts[i].alignment : undefined;
      return { domain: domainOf(from) ?? from.toLowerCase(), dkimStrict: alignment?.dkim.strict === true, spfStrict: alignment?.spf.strict === true };
    }),
    tooManyFrom: false,
  });
}

/**
 * From domains DMARC is checked for: one address for each distinct domain, up to
 * MAX_FROM_DOMAINS. RFC 7489 §6.6.1 leaves a From of several addresses to the receiver; mailauth
 * gives no DMARC result at all for one, so "From: vera@victim.example, x@attacker.example" (or two
 * From fields) escaped the p=reject of victim.example that a From of one address is held for.
 * A From of more domains is not checked at all (`more`): the victim's in eleventh place would
 * escape, so such a post is never taken as authenticated (tooManyFromDomains).
 */
export const MAX_FROM_DOMAINS = 10;

function fromDomains(addresses: string[]): { froms: string[]; more: boolean } {
  const byDomain = new Map<string, string>();
  for (const a of addresses) {
    const d = (domainOf(a) ?? a).toLowerCase();
    if (byDomain.has(d)) continue;
    if (byDomain.size === MAX_FROM_DOMAINS) return { froms: [], more: true };
    byDomain.set(d, a);
  }
  return { froms: [...byDomain.values()], more: false };
}

/**
 * DMARC's verdict for a From of more than MAX_FROM_DOMAINS domains: permerror, whatever the
 * domains say (summarise() makes it unsure, never aligned, and the authentication rule holds it).
 */
function tooManyFromDomains(): DMARCResult {
  const status = { result: 'permerror', comment: `From names more than ${MAX_FROM_DOMAINS} domains` };
  return { status, info: formatAuthHeaderRow('dmarc', status) } as unknown as DMARCResult;
}

/** The verdict that asks most of the receiver: a fail (under reject, then quarantine, first), a temperror, a pass, none. */
function harshest(verdicts: DMARCResult[]): DMARCResult | false {
  const weight = (v: DMARCResult) => v.status.result === 'fail' ? 10 + (v.policy === 'reject' ? 2 : v.policy === 'quarantine' ? 1 : 0)
    : v.status.result === 'temperror' ? 5 : v.status.result === 'permerror' ? 4 : v.status.result === PASS ? 1 : 0;
  return verdicts.reduce<DMARCResult | false>((worst, v) => (!worst || weight(v) > weight(worst) ? v : worst), false);
}

/**
 * DMARC's pass checked again for a record that asks for strict alignment (adkim=s, aspf=s; RFC
 * 7489 §3.1.1): the passing domain must then be From's domain itself, not another of its
 * organisation's. mailauth 4.13 passes `{ strict }` to its getAlignment as an object, always true,
 * and then matches organisational domains whatever the record says: a signature of any subdomain
 * (a hosted customer's, a mailing vendor's) passed for a domain that asked for strict alignment.
 */
function strictAlignment(dmarc: DMARCResult, from: string, spfDomains: string[], dkimDomains: string[]): void {
  if (dmarc.status.result !== PASS) return;
  const fromDomain = domainOf(from) ?? from;
  const aligns = (strict: boolean) => (d: string) => (strict ? sameDomain(d, fromDomain) : sameOrganisation(d, fromDomain));
  if (spfDomains.some(aligns(dmarc.alignment.spf.strict)) || dkimDomains.some(aligns(dmarc.alignment.dkim.strict))) return;
  dmarc.status.result = 'fail';
  dmarc.info = formatAuthHeaderRow('dmarc', dmarc.status);
}

/**
 * A signature whose l= covers only the start of the body (RFC 6376 §8.2): whoever has one such
 * message can append anything below the signed part, a link, a new MIME part, and the signature
 * still verifies; mailauth says dkim=pass (undersized) and let DMARC pass on it, so a forgery in
 * a p=reject domain's name was taken as authenticated. Such a pass is recorded as dkim=policy
 * (RFC 8601 §2.7.1: signed, but the signature is not acceptable here) and counts for nothing.
 * A signature with l= that covers the whole body still passes.
 */
function partialSignatures(results: Outcome['dkim']['results']): void {
  for (const r of results ?? []) {
    if (r.status.result !== PASS || !r.status.underSized) continue;
    r.status.result = 'policy';
    r.info = formatAuthHeaderRow('dkim', r.status);
  }
}

/** The result of a signature whose l= is longer than the body (src/mail/dkim-length.ts): permerror, counting for nothing. */
function overlongResult(s: OverlongSignature): NonNullable<Outcome['dkim']['results']>[number] {
  const status = { result: 'permerror', comment: `l=${s.length} is longer than the body of ${s.body} bytes`, header: { i: `@${s.domain}`, s: s.selector } };
  return { signingDomain: s.domain, selector: s.selector, status, info: formatAuthHeaderRow('dkim', status) } as unknown as NonNullable<Outcome['dkim']['results']>[number];
}

/**
 * A name that cannot be one in DNS (a label over 63 octets, control characters: the resolver says
 * EBADNAME) has no records, now or later: it is answered as a name that does not exist. mailauth
 * took EBADNAME for a failure of the moment, so a signature with such a selector, put on a forgery,
 * made the post's DKIM result temperror and the authentication rule only held it where the list
 * refuses forgeries.
 */
function noBadNames<T>(lookup: Promise<T>): Promise<T> {
  return lookup.catch((err: { code?: string; message?: string }) => {
    throw err?.code === 'EBADNAME' ? Object.assign(new Error(`${err.message ?? 'bad name'} (not a DNS name)`), { code: 'ENOTFOUND' }) : err;
  });
}

function withDeadline<T>(lookup: Promise<T>, end: number, what: string): Promise<T> {
  return beforeDeadline(lookup, end, () => Object.assign(new Error(`DNS lookup of ${what} timed out`), { code: 'ETIMEOUT' }));
}

function summarise(o: Checked, authservId: string, spfChecked: boolean): AuthChecks {
  const fromDomain = domainOf(o.dkim.headerFrom?.length === 1 ? o.dkim.headerFrom[0] : null);
  const signatures = o.dkim.results ?? [];
  const dkim = signatures.find((r) => r.status.result === PASS) ?? signatures[0];
  const spf = spfChecked && o.spf ? o.spf : null;
  const dmarc = o.dmarc || null;
  const arc = o.arc || null;

  // DMARC's own verdict when the domain has a record (it knows adkim/aspf=s); without one, the
  // same test in relaxed mode: the passing domain's organisational domain is From's.
  let aligned: boolean;
  if (o.tooManyFrom) {
    aligned = false;
  } else if (dmarc && (dmarc.status.result === 'pass' || dmarc.status.result === 'fail')) {
    aligned = dmarc.status.result === 'pass';
  } else {
    const passed = [
      ...(spf?.status.result === PASS && spf.domain ? [spf.domain as string] : []),
      ...signatures.filter((r) => r.status.result === PASS).map((r) => r.signingDomain),
    ];
    aligned = fromDomain !== null && passed.some((d) => sameOrganisation(d, fromDomain));
  }

  const rows = [
    ...signatures.map((r) => r.info),
    ...(spf ? [spf.info as string] : []),
    arc?.info ?? 'arc=none',
    ...(dmarc?.info ? [dmarc.info] : []),
  ];
  return {
    spf: spf ? spf.status.result : 'none',
    dkim: dkim ? dkim.status.result : 'none',
    dmarc: dmarc ? dmarc.status.result : 'none',
    arc: arc ? arc.status.result : 'none',
    arcInstance: typeof arc?.i === 'number' ? arc.i : 0,
    fromDomain,
    aligned,
    dmarcPolicy: dmarc && dmarc.status.result !== 'none' && dmarc.status.result !== 'temperror' ? ((dmarc as { policy?: string }).policy ?? null) : null,
    dmarcDomain: (dmarc as { domain?: string } | null)?.domain ?? null,
    unsure: o.tooManyFrom ? { result: 'permerror', reason: (dmarc?.status as { comment?: string } | undefined)?.comment ?? 'From names too many domains' } : unsureTemperror(o, spf),
    header: authenticationResults(authservId, rows),
  };
}

/**
 * The temporary error that leaves the verdict open, if any: DMARC's own (From's record could not
 * be read), SPF's for an envelope domain aligned with a From domain, or a DKIM signature's whose
 * d= is aligned with one (relaxed or strict as that domain's record says). Any other could not
 * have changed the verdict, whatever its lookup would have answered: a forger who signs with a
 * domain of their own whose DNS does not answer gets no hold out of it where a forgery is refused.
 */
function unsureTemperror(o: Checked, spf: Outcome['spf'] | null): AuthChecks['unsure'] {
  const aligned = (domain: string, strict: (f: FromDomain) => boolean) =>
    o.froms.some((f) => (strict(f) ? sameDomain(domain, f.domain) : sameOrganisation(domain, f.domain)));
  const why = o.dmarc && o.dmarc.status.result === 'temperror' ? `the DMARC record of ${(o.dmarc as { domain?: string }).domain ?? 'the From domain'} could not be read`
    : spf && spf.status.result === 'temperror' && spf.domain && aligned(spf.domain as string, (f) => f.spfStrict) ? `SPF of ${spf.domain as string} could not be checked`
      : (o.dkim.results ?? []).filter((r) => r.status.result === 'temperror' && r.signingDomain && aligned(r.signingDomain, (f) => f.dkimStrict))
        .map((r) => `the DKIM key of ${r.signingDomain} could not be read`)[0];
  return why ? { result: 'temperror', reason: `a DNS lookup failed for the time being (temperror: ${why}): the checks could not finish` } : null;
}

/** What is recorded when the checks did not finish: every method a temporary error. */
function timedOut(input: AuthInput, authservId: string): AuthChecks {
  const comment = '(the checks did not finish in time)';
  const spf = input.peer?.ip && !input.peer.relay ? 'temperror' : 'none';
  // The chain's length is still known without DNS: whoever extends it must not restart at i=1.
  const seals = headerFields(splitMessage(input.raw).head).filter((f) => f.name === 'arc-seal');
  const arcInstance = Math.max(0, ...seals.map((f) => Number(/(?:^|;)\s*i\s*=\s*(\d+)/.exec(fieldValue(f))?.[1] ?? 0)));
  return {
    spf,
    dkim: 'temperror',
    dmarc: 'temperror',
    // Not a result RFC 8617 defines for arc=, so kept out of the header; it tells the sealer the chain was not checked.
    arc: arcInstance > 0 ? 'temperror' : 'none',
    arcInstance,
    fromDomain: null,
    aligned: false,
    dmarcPolicy: null,
    unsure: { result: 'temperror', reason: 'a DNS lookup failed for the time being (temperror): the checks could not finish' },
    header: authenticationResults(authservId, [
      `dkim=temperror ${comment}`,
      ...(spf === 'temperror' ? [`spf=temperror ${comment}`] : []),
      `dmarc=temperror ${comment}`,
    ]),
  };
}

/**
 * The value of Authentication-Results (RFC 8601): our authserv-id, then one method result per
 * line, folded with CRLF as mailauth writes it (each copy's line ending replaces it).
 */
function authenticationResults(authservId: string, rows: string[]): string {
  return `${authservId};\r\n ${rows.map(fold).join(';\r\n ')}`;
}

/** Folds a long method result at spaces, so that no line of the field passes 998 octets (RFC 5322 §2.1.1). */
function fold(row: string): string {
  const clean = flatComments(row.replace(/[\r\n]+\s*/g, ' '));
  if (clean.length <= 160) return clean;
  const words = clean.split(' ');
  const lines: string[] = [];
  let line = '';
  for (const w of words) {
    if (line && line.length + 1 + w.length > 160) {
      lines.push(line);
      line = w;
    } else line = line ? `${line} ${w}` : w;
  }
  if (line) lines.push(line);
  return lines.join('\r\n ');
}

/**
 * The row with every comment flat and closed: mailauth escapes ")" in a comment but not "(", so a
 * client's envelope sender ("x) ; dkim=pass (y"@…) opened a nested comment that never closed, and
 * readers (python3-authres) found results in it. Inside a comment, "(", ")" and "\\" that were
 * text become "?"; quoted strings outside comments are left as they are.
 */
function flatComments(row: string): string {
  let out = '';
  let quoted = false;
  let inComment = false;
  for (let i = 0; i < row.length; i++) {
    const c = row[i];
    if (inComment) {
      if (c === '\\') {
        i++;
        out += '?';
      } else if (c === '(') out += '?';
      else {
        if (c === ')') inComment = false;
        out += c;
      }
    } else if (quoted) {
      if (c === '\\' && i + 1 < row.length) out += c + row[++i];
      else {
        if (c === '"') quoted = false;
        out += c;
      }
    } else {
      if (c === '"') quoted = true;
      else if (c === '(') inComment = true;
      out += c;
    }
  }
  return out + (inComment ? ')' : quoted ? '"' : '');
}

function domainOf(address: string | null): string | null {
  const at = address?.lastIndexOf('@') ?? -1;
  return address && at > 0 ? address.slice(at + 1).toLowerCase().replace(/\.$/, '') || null : null;
}

/** The authentication of a post whose From a login vouched for: aligned, as a DKIM pass would be. */
function loginAuth(address: string, authservId: string): AuthChecks {
  return {
    spf: 'none', dkim: 'none', dmarc: 'none', arc: 'none', arcInstance: 0,
    fromDomain: address.slice(address.lastIndexOf('@') + 1), dmarcPolicy: null, aligned: true, unsure: null,
    header: `${authservId}; auth=pass smtp.auth=${address}`,
  };
}
