/*
 * The list's own signatures on its copies (docs/delivery.md, "The list's signatures"): a DKIM
 * signature on every copy that covers the one-click headers (RFC 8058 §4), and an ARC set
 * (RFC 8617) that vouches for what the arrival checks found.
 *
 * Built on mailauth's canonicalisation (its header and body canonicalisers, its signature field
 * formatting, its ARC sealer). The one thing done here with node:crypto directly is the RSA
 * signature of the DKIM header hash: mailauth's DkimSigner parses the PEM key again for every
 * signature (crypto.createPrivateKey, ~0.4 ms, more than the signature itself), and a list signs
 * once per member. Here the key is parsed once per batch and the signature runs in libuv's thread
 * pool (the async form of crypto.sign), so the event loop keeps sending while copies are signed.
 */

import crypto from 'node:crypto';
import { promisify } from 'node:util';
import { createSeal, getARChain } from 'mailauth/lib/arc/index.js';
import { dkimBody } from 'mailauth/lib/dkim/body/index.js';
import { formatRelaxedLine, formatSignatureHeaderLine, getSigningHeaderLines, type HeaderRow } from 'mailauth/lib/tools.js';
import { parseHeaders } from './dkim-header-end.ts';
import type { AuthChecks } from './post-checks.ts';

export type { HeaderRow };

/** A list's DKIM key, parsed once. */
export interface ListKey {
  domain: string;
  selector: string;
  pem: string;
  key: crypto.KeyObject;
}

/**
 * The RSA key sizes a list may sign with: RFC 8301 §3.2 (at least 1,024 bits; verifiers must
 * handle up to 4,096). Larger keys are no stronger in practice and cost the delivery workers every
 * list shares: each copy is signed once per member, an RSA-16384 signature took 313 ms against
 * 0.45 ms for RSA-2048, and one list's posts kept the thread pool busy for minutes at a time.
 */
export const RSA_KEY_BITS = { min: 1024, max: 4096 } as const;

/** Why a key cannot sign a list's mail (its type, its size), or null when it can. */
export function signingKeyProblem(key: crypto.KeyObject): string | null {
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (key.asymmetricKeyType === 'ed25519' || (key.asymmetricKeyType === 'rsa' && bits >= RSA_KEY_BITS.min && bits <= RSA_KEY_BITS.max)) return null;
  return `an RSA key of ${RSA_KEY_BITS.min} to ${RSA_KEY_BITS.max} bits (2048 advised) or an Ed25519 key (got ${key.asymmetricKeyType}${bits ? ` ${bits}` : ''})`;
}

/** Parses a stored key; throws when it is not one a list may sign with (signingKeyProblem). */
export function listKey(domain: string, selector: string, pem: string): ListKey {
  const key = crypto.createPrivateKey({ key: pem, format: 'pem' });
  const problem = signingKeyProblem(key);
  if (problem) throw new Error(`the key must be ${problem}`);
  return { domain, selector, pem, key };
}

/**
 * What the list's DKIM signature covers: the author's identity and the message's structure, the
 * list's headers, and the member's own List-Unsubscribe and List-Unsubscribe-Post (RFC 8058 §4
 * requires both). Each field is signed as often as it occurs; a field the copy lacks is not named.
 */
export const LIST_SIGNED_FIELDS = [
  'From', 'Sender', 'Reply-To', 'To', 'Cc', 'Subject', 'Date', 'Message-ID', 'In-Reply-To', 'References',
  'MIME-Version', 'Content-Type', 'Content-Transfer-Encoding', 'Content-ID', 'Content-Description',
  'List-Id', 'List-Unsubscribe', 'List-Unsubscribe-Post', 'List-Post', 'List-Help', 'List-Subscribe',
  'List-Owner', 'List-Archive', 'Archived-At', 'Precedence',
].join(':');

/**
 * What the ARC-Message-Signature covers: computed once per post, so it leaves out the two lines
 * that differ per member (List-Unsubscribe, List-Unsubscribe-Post); it covers the author's
 * DKIM-Signature (not the list's, which is added above it per member: a verifier takes the
 * bottom-most instance of a field, the author's).
 */
export const ARC_SIGNED_FIELDS = LIST_SIGNED_FIELDS.split(':')
  .filter((f) => f !== 'List-Unsubscribe' && f !== 'List-Unsubscribe-Post')
  .concat(['DKIM-Signature'])
  .join(':');

/**
 * The header section as mailauth's rows (folded lines kept together, CRLF inside), read in linear
 * time (dkim-header-end.ts): mailauth's own took 52 s for a field folded over 150,000 lines, for
 * every copy of such a post to a signing list.
 */
export function headerRows(head: Buffer): HeaderRow[] {
  return parseHeaders(head).parsed.filter((r) => r.key);
}

/**
 * The body hash (relaxed, SHA-256) of a body as it goes on the wire: every line ending CRLF, a
 * bare LF and a lone CR alike (nodemailer's data stream sends both as CRLF, RFC 5321 §2.3.8).
 * Copies of a post have their lone CRs made line ends before (list-copy.ts), but a digest carries
 * each post byte for byte: hashed over a post's lone CR, the digest's signature failed for every
 * reader once the relay had the CRLF.
 */
export function bodyHash(body: Buffer): string {
  const hasher = dkimBody('relaxed', 'sha256', false);
  const text = body.toString('latin1');
  hasher.update(/\r(?!\n)|(?<!\r)\n/.test(text) ? Buffer.from(text.replace(/\r\n|\r|\n/g, '\r\n'), 'latin1') : body);
  return hasher.digest('base64');
}

const signAsync = promisify(crypto.sign);

/**
 * The header fields a signature covers that are the same on every copy of a post, signed as
 * mailauth's signer would (getSigningHeaderLines: every occurrence, bottom-up), in relaxed form.
 * Computed once per post: each member's signature then canonicalises only its own lines.
 */
export interface SignedFields {
  /** the h= names of these fields */
  keys: string;
  /** their relaxed canonical form, in signing order */
  canonical: Buffer;
}

export function signedFields(rows: HeaderRow[], fields = LIST_SIGNED_FIELDS): SignedFields {
  const signed = getSigningHeaderLines(rows, fields);
  return { keys: signed.keys, canonical: Buffer.concat(signed.headers.map((h) => formatRelaxedLine(h.line, '\r\n'))) };
}

/**
 * Every member's DKIM-Signature for one post, from what the post's copies share. The member's own
 * lines are the only fields that differ, and they are always the same names (List-Unsubscribe,
 * and List-Unsubscribe-Post with a token): so the signature field up to `b=` (its tags, t= once
 * per post) and its canonical form are made once per set of names, and a member costs the
 * canonical form of their lines, one RSA signature and the folding of b=.
 *
 * This is mailauth's relaxedHeaders (lib/dkim/header/relaxed.js) in two parts. The fields are
 * taken bottom-up, so the shared ones (below) come first in h= and in the hashed data, then the
 * member's; then the signature field itself up to its empty b=, as RFC 6376 §3.7 hashes it.
 * test/list-signing.test.ts has dkimpy verify every copy.
 */
export class MemberSigner {
  /** t=, once per post: the database's time (db/database-clock.ts), which the caller passes, not this machine's */
  private readonly time: number;
  private readonly templates = new Map<string, { unsigned: string; canonical: Buffer }>();
  /** the names of the fields a signature covers, lower case */
  private readonly wanted: Set<string>;

  constructor(private readonly k: ListKey, private readonly below: SignedFields, private readonly bh: string, signedAt: Date, fields = LIST_SIGNED_FIELDS) {
    this.time = Math.floor(signedAt.getTime() / 1000);
    this.wanted = new Set(fields.toLowerCase().split(':'));
  }

  /** `DKIM-Signature: …` (folded with CRLF, no line ending) for a copy with these member lines on top. */
  async sign(lines: string[]): Promise<string> {
    // Signing order is bottom-up (mailauth's getSigningHeaderLines when signing).
    const own = lines.filter((l) => this.wanted.has(l.slice(0, l.indexOf(':')).trim().toLowerCase())).reverse();
    const names = own.map((l) => l.slice(0, l.indexOf(':')).trim()).join(': ');
    let t = this.templates.get(names);
    if (!t) {
      const tags = { a: `${this.k.key.asymmetricKeyType}-sha256`, c: 'relaxed/relaxed', d: this.k.domain, s: this.k.selector, h: [this.below.keys, names].filter(Boolean).join(': '), bh: this.bh, t: this.time, b: '' };
      const unsigned = formatSignatureHeaderLine('DKIM', tags, true);
      t = { unsigned, canonical: formatRelaxedLine(unsigned) };
      this.templates.set(names, t);
    }
    const canonical = Buffer.concat([this.below.canonical, ...own.map((l) => formatRelaxedLine(l, '\r\n')), t.canonical]);
    const signature = this.k.key.asymmetricKeyType === 'rsa'
      ? await signAsync('sha256', canonical, this.k.key)
      : await signAsync(null, crypto.createHash('sha256').update(canonical).digest(), this.k.key);
    // b= is the last tag and ends the template: its value follows, folded (FWS inside b= is ignored).
    return `${t.unsigned}\r\n ${signature.toString('base64').replace(/.{75}/g, '$&\r\n ').trimEnd()}`;
  }
}

/** A whole message signed (digests and notices: one body each, so nothing to share). */
export async function signMessage(k: ListKey, raw: Buffer, signedAt: Date): Promise<Buffer> {
  const crlf = raw.indexOf('\r\n\r\n');
  const lf = raw.indexOf('\n\n');
  const [at, sep] = crlf >= 0 && (lf < 0 || crlf < lf) ? [crlf, 4] : lf >= 0 ? [lf, 2] : [raw.length, 0];
  const eol = sep === 2 ? '\n' : '\r\n';
  const signature = await new MemberSigner(k, signedFields(headerRows(raw.subarray(0, at))), bodyHash(raw.subarray(at + sep)), signedAt).sign([]);
  return Buffer.concat([Buffer.from(`${signature.replace(/\r\n/g, eol)}${eol}`, 'latin1'), raw]);
}

/** The ARC set to add: its instance, the chain validation status, the A-R value it carries. */
export interface ArcSeal {
  instance: number;
  cv: 'none' | 'pass' | 'fail';
  /** `authserv-id; method=result …` */
  results: string;
}

/** The highest instance of the ARC chain in a header section, and the cv= of its seal. */
export function incomingChain(rows: HeaderRow[]): { instance: number; cv: string | null } {
  let instance = 0;
  let cv: string | null = null;
  for (const r of rows) {
    if (r.key !== 'arc-seal') continue;
    const value = r.line.toString('latin1');
    const i = Number(/[:;\s]i\s*=\s*(\d+)/i.exec(value)?.[1] ?? 0);
    if (i > instance) {
      instance = i;
      cv = /[;\s]cv\s*=\s*([a-z]+)/i.exec(value)?.[1]?.toLowerCase() ?? null;
    }
  }
  return { instance, cv };
}

/**
 * Which ARC set a copy gets (RFC 8617 §5.1), from the arrival checks and the chain the post
 * carries: i = the incoming instance + 1; cv=none for the first set, pass when the incoming chain
 * validated, fail when it did not. None when the chain already failed at an earlier hop (its seal
 * says cv=fail: the chain has ended), when it is at the limit of 50, or when the post carries a
 * chain that no check has validated (a post stored before the checks ran, or whose checks ran out
 * of time: arc=temperror): we cannot vouch for it either way, and a seal saying cv=fail would end
 * a chain that may have been sound.
 */
export function arcSealFor(auth: AuthChecks | undefined, rows: HeaderRow[], authservId: string): ArcSeal | null {
  const chain = incomingChain(rows);
  if (chain.cv === 'fail' || chain.instance >= 50) return null;
  const results = auth?.header?.trim() || `${authservId}; none`;
  if (chain.instance === 0) return { instance: 1, cv: 'none', results };
  if (!auth || auth.arc === 'temperror') return null;
  const validated = auth.arc === 'pass' && auth.arcInstance === chain.instance;
  return { instance: chain.instance + 1, cv: validated ? 'pass' : 'fail', results };
}

/**
 * The ARC set (ARC-Seal, ARC-Message-Signature, ARC-Authentication-Results, in that order, each
 * folded with CRLF) over a header section and a body hash, by mailauth's sealer.
 */
export async function arcSet(k: ListKey, rows: HeaderRow[], bh: string, seal: ArcSeal, signedAt: Date): Promise<string[]> {
  // With cv=pass the seal signs the earlier sets too: mailauth reads them from the parsed chain.
  const chain = seal.cv === 'pass' ? getARChain({ parsed: rows }) : false;
  const { headers } = await createSeal(false, {
    headers: { parsed: rows },
    arc: { chain },
    seal: {
      i: seal.instance,
      cv: seal.cv,
      signingDomain: k.domain,
      selector: k.selector,
      privateKey: k.pem,
      algorithm: `${k.key.asymmetricKeyType}-sha256`,
      authResults: seal.results,
      // a string: mailauth falls back to its default list (with List-Unsubscribe) for anything else
      headerList: ARC_SIGNED_FIELDS,
      bodyHash: bh,
      signTime: signedAt,
    },
  });
  return headers;
}

/**
 * The DNS record that publishes a key's public half, as a zone-file line:
 * `S._domainkey.DOMAIN. IN TXT "v=DKIM1; k=rsa; p=…"`, the value split into strings of at most 255
 * characters (the limit of one TXT string; resolvers join them).
 */
export function dkimTxtRecord(domain: string, selector: string, pem: string): string {
  const strings = dkimTxtValue(pem).match(/.{1,255}/g)!.map((s) => `"${s}"`);
  return `${selector}._domainkey.${domain}. IN TXT ${strings.join(' ')}`;
}

/** The TXT value that publishes a private key's public half: `v=DKIM1; k=rsa; p=…`. */
export function dkimTxtValue(pem: string): string {
  const publicKey = crypto.createPublicKey(crypto.createPrivateKey({ key: pem, format: 'pem' }));
  const der = publicKey.export({ type: 'spki', format: 'der' });
  // Ed25519 publishes the bare 32-byte key (RFC 8463), RSA the SubjectPublicKeyInfo.
  const ed25519 = publicKey.asymmetricKeyType === 'ed25519';
  return `v=DKIM1; k=${ed25519 ? 'ed25519' : 'rsa'}; p=${(ed25519 ? der.subarray(der.length - 32) : der).toString('base64')}`;
}
