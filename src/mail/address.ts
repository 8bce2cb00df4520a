/*
 * The addresses each list answers at (docs/mail.md), as pure string logic. `dev@`, `dev-request@`,
 * `dev-subscribe@`, `dev-unsubscribe@`, `dev-confirm+TOKEN@`, `dev-owner@`, `dev-bounces+TOKEN@`.
 */

import url from 'node:url';
import { decodeHeaderWords } from './header-words.ts';

export type Role = 'post' | 'request' | 'subscribe' | 'unsubscribe' | 'confirm' | 'owner' | 'bounces';

export interface RoleCandidate {
  localPart: string;
  role: Role;
  token?: string;
}

const PLAIN_SUFFIXES: Role[] = ['request', 'subscribe', 'unsubscribe', 'owner'];
const TOKEN_SUFFIXES: Role[] = ['confirm', 'bounces'];
export const RESERVED_SUFFIXES = [...PLAIN_SUFFIXES, ...TOKEN_SUFFIXES].map((s) => `-${s}`);

export function splitAddress(address: string): { local: string; domain: string } | null {
  const at = address.lastIndexOf('@');
  if (at <= 0 || at === address.length - 1) return null;
  return { local: address.slice(0, at).toLowerCase(), domain: address.slice(at + 1).toLowerCase() };
}

/** Every (list local part, role) an address could mean, most literal first. */
export function roleCandidates(local: string): RoleCandidate[] {
  const out: RoleCandidate[] = [];
  if (!local.includes('+')) out.push({ localPart: local, role: 'post' });
  const plus = local.indexOf('+');
  if (plus > 0) {
    const base = local.slice(0, plus);
    const token = local.slice(plus + 1);
    for (const role of TOKEN_SUFFIXES) {
      if (base.endsWith(`-${role}`) && /^[a-z0-9._=-]{1,200}$/.test(token)) {
        out.push({ localPart: base.slice(0, -role.length - 1), role, token });
      }
    }
    return out;
  }
  for (const role of PLAIN_SUFFIXES) {
    if (local.endsWith(`-${role}`)) out.push({ localPart: local.slice(0, -role.length - 1), role });
  }
  return out;
}

/** Address of a list for one role, e.g. roleAddress('dev@x.org', 'bounces', 'abc'). */
export function roleAddress(listAddress: string, role: Role, token?: string): string {
  const parts = splitAddress(listAddress)!;
  if (role === 'post') return listAddress;
  return `${parts.local}-${role}${token ? `+${token}` : ''}@${parts.domain}`;
}

/**
 * The VERP envelope sender of a list's mail to one member: dev-bounces+TOKEN@lists.example.org
 * (a bounce to it names the member; roleCandidates reads it back). Notices use NOTICE_BOUNCE_TOKEN.
 */
export function verpAddress(listAddress: string, token: string): string {
  const { prefix, domain } = verpParts(listAddress);
  return `${prefix}${token}@${domain}`;
}

/**
 * verpAddress around its token, for SQL that builds it for every member at once: accept_post
 * (sql/0013) writes `prefix || token || '@' || domain`, as verpAddress does here.
 */
export function verpParts(listAddress: string): { prefix: string; domain: string } {
  const parts = splitAddress(listAddress)!;
  return { prefix: `${parts.local}-bounces+`, domain: parts.domain };
}

/** The token of a notice's envelope sender: bounces of notices are recorded but never scored. */
export const NOTICE_BOUNCE_TOKEN = 'notice';

/**
 * The token of a bounce probe's envelope sender, dev-bounces+probe-HEX@: it names one probe (a
 * member's own token is plain hex), so a bounce to it says that this probe, and nothing else, failed.
 */
export const PROBE_TOKEN = /^probe-[a-f0-9]{32}$/;

/** The probe token in a VERP envelope sender, or null when the address is not a probe's. */
export function probeTokenOf(envelopeFrom: string): string | null {
  const parts = splitAddress(envelopeFrom);
  const plus = parts ? parts.local.indexOf('+') : -1;
  if (!parts || plus < 0 || !parts.local.slice(0, plus).endsWith('-bounces')) return null;
  const token = parts.local.slice(plus + 1);
  return PROBE_TOKEN.test(token) ? token : null;
}

const LOCAL_PART = /^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$/;

/** Why a list address is not acceptable, or null when it is. */
export function listAddressProblem(address: string): string | null {
  const parts = splitAddress(address);
  if (!parts) return `"${address}" is not an e-mail address`;
  if (!LOCAL_PART.test(parts.local)) return `list name "${parts.local}" may use only letters, digits, ".", "_" and "-"`;
  if (normalizeEmail(`list@${parts.domain}`) === null) return `"${parts.domain}" is not a domain name`;
  const reserved = RESERVED_SUFFIXES.find((s) => parts.local.endsWith(s));
  if (reserved) return `list name "${parts.local}" may not end in "${reserved}": that suffix is one of the list's own addresses`;
  return null;
}

// No white space, controls (C0, DEL, C1) or specials; UTF-8 is allowed (RFC 6531, SMTPUTF8).
const LOCAL = /^[^\s@<>()",;:\\[\]\u0000-\u001f\u007f-\u009f]+$/;
const ASCII_DOMAIN = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$/;

/**
 * A subscriber address in canonical form, or null when it is not one: lower case, NFC, at most
 * 64 octets before the @ and 254 in all. International addresses (RFC 6531) are taken: a
 * UTF-8 local part, and a domain of U-labels, kept as U-labels after IDNA (UTS #46) mapping,
 * the spelling a post's From has. A domain given in A-labels (`xn--`) is the same domain and
 * gets the same spelling: `bob@xn--bcher-kva.example` is `bob@bücher.example`, one member, one
 * account, one sender rule, whichever way it was typed or a post's From wrote it. Copies to
 * such addresses need SMTPUTF8 only for a non-ASCII local part (envelopeAddress).
 */
export function normalizeEmail(value: string): string | null {
  // U+FFFD is what bytes that were not UTF-8 became on the way in: no one's real address.
  if (value.includes('\ufffd')) return null;
  const email = value.trim().toLowerCase().normalize('NFC');
  const at = email.lastIndexOf('@');
  if (at <= 0) return null;
  const local = email.slice(0, at);
  const domain = canonicalDomain(email.slice(at + 1));
  if (!LOCAL.test(local) || Buffer.byteLength(local) > 64 || domain === null) return null;
  const canonical = `${local}@${domain}`;
  // Idempotent by construction: what the mapping gives must map to itself.
  if (canonical !== canonical.toLowerCase().normalize('NFC')) return null;
  return Buffer.byteLength(canonical) <= 254 ? canonical : null;
}

/**
 * The mailbox an address reaches, for limits on what is sent to one person: a normalized address
 * less its sub-address (`bob+tag@` is `bob@`, RFC 5233), which lands in the same mailbox. Keyed on
 * the address alone, each of `bob+1@`, `bob+2@`, … had its own limit on confirmations.
 */
export function mailboxKey(email: string): string {
  const at = email.lastIndexOf('@');
  const plus = email.indexOf('+');
  return plus > 0 && plus < at ? `${email.slice(0, plus)}${email.slice(at)}` : email;
}

// Label separators of IDNA (UTS #46): the full stop, and the ideographic and fullwidth ones it maps to it.
const LABEL_SEPARATOR = /[.\u3002\uff0e\uff61]/;
const A_LABEL = /(?:^|[.\u3002\uff0e\uff61])xn--/;

/**
 * A lower-case, NFC domain in U-labels, or null when it is no domain name. An all-ASCII domain
 * without an A-label is taken as it is; any other goes through IDNA's mapping (UTS #46) to
 * A-labels and back. An A-label must be one (RFC 5891 §5.4): read as Unicode and written again,
 * it gives back exactly what was given. `xn--zz` is not punycode, and `xn--abc-` reads as `abc`,
 * which is written `abc`: both are refused rather than stored as a second, unreachable spelling.
 */
function canonicalDomain(domain: string): string | null {
  const ascii = /[^\x00-\x7f]/.test(domain) || A_LABEL.test(domain) ? url.domainToASCII(domain) : domain;
  if (!ASCII_DOMAIN.test(ascii)) return null;
  if (ascii === domain && !A_LABEL.test(domain)) return domain;
  const unicode = url.domainToUnicode(ascii);
  if (url.domainToASCII(unicode) !== ascii) return null;
  const given = domain.split(LABEL_SEPARATOR);
  const labels = ascii.split('.');
  if (given.some((label, i) => /^[\x00-\x7f]*$/.test(label) && label !== labels[i])) return null;
  return unicode;
}

/**
 * Who a post is from, spelled as members and sender rules are: From's address, or the envelope
 * sender's when From has none, in canonical form; lower case as it came when it is no address
 * normalizeEmail takes (it can be no one's membership then, but a moderator still sees it).
 */
export function postSender(fromEmail: string, envelopeFrom: string | null): string {
  const given = fromEmail || envelopeFrom || '';
  return normalizeEmail(given) ?? given.toLowerCase();
}

/**
 * The spelling a release before sql/0074 stored for this canonical address when it was typed
 * with its domain in A-labels (`bob@xn--bcher-kva.example` for `bob@bücher.example`), or null
 * when its domain is ASCII. Read beside the canonical one until the address-spellings
 * conversion job has respelled such rows.
 */
export function oldSpelling(address: string): string | null {
  const at = address.lastIndexOf('@');
  const domain = address.slice(at + 1);
  const ascii = asciiDomain(domain);
  return at > 0 && ascii !== domain ? `${address.slice(0, at)}@${ascii}` : null;
}

/**
 * The spellings an archived From may have for the mailbox `address` names: as typed (lower case,
 * as From addresses are stored) and, when its domain is international, in U-labels and in A-labels
 * (`bob@bücher.example`, `bob@xn--bcher-kva.example`). Archived messages keep the From as it was
 * sent, so an author's address is looked for in each. One spelling for an ASCII domain.
 */
export function mailboxSpellings(address: string): string[] {
  const typed = address.trim().toLowerCase();
  const canonical = normalizeEmail(typed);
  if (canonical === null) return [typed];
  return [...new Set([typed, canonical, oldSpelling(canonical) ?? canonical])];
}

/**
 * An address as an SMTP envelope gives it: a domain in U-labels is written in A-labels (xn--),
 * which every server takes, so that only a non-ASCII local part needs SMTPUTF8 (RFC 6531 §3.2).
 * `bob@bücher.example` goes out as `bob@xn--bcher-kva.example`; `jörg@exämple.de` as it is.
 */
export function envelopeAddress(address: string): string {
  const at = address.lastIndexOf('@');
  const local = address.slice(0, at);
  const domain = address.slice(at + 1);
  if (at <= 0 || /[^\x00-\x7f]/.test(local)) return address;
  return `${local}@${asciiDomain(domain)}`;
}

/** A domain in A-labels (`bücher.example` is `xn--bcher-kva.example`): as headers and envelopes write it. */
export function asciiDomain(domain: string): string {
  if (/^[\x00-\x7f]*$/.test(domain)) return domain;
  return url.domainToASCII(domain) || domain;
}

/**
 * A mailbox we write in a header field (`"dev list" <dev-request@bücher.example>`, or a bare
 * address) with the address's domain in A-labels, as envelopeAddress() writes it: in U-labels the
 * field is raw UTF-8, which only SMTPUTF8 carries (RFC 6532), and a server without 8BITMIME is not
 * sent it at all. The display name is the caller's (displayName() encodes it).
 */
export function headerMailbox(mailbox: string): string {
  const angle = /<([^<>]*)>\s*$/.exec(mailbox);
  if (!angle) return envelopeAddress(mailbox.trim());
  return `${mailbox.slice(0, angle.index)}<${envelopeAddress(angle[1])}>`;
}

// C0 controls but the tab, and DEL.
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;

/**
 * `EMAIL` or `"Name <EMAIL>"` as an administrator gives it (`listkeeper subscribe`, the REST API):
 * the canonical address (null when it is none) and the name, if any (at most 200 characters),
 * its RFC 2047 encoded words (`=?utf-8?q?Jos=C3=A9?=`, as a From header gives it) decoded.
 */
export function parseMailbox(input: string): { email: string | null; name: string | null } {
  // A control character (a NUL, a line break) in a name would be stored, or refused by PostgreSQL
  // without saying which line: the mailbox is refused here instead.
  if (CONTROL.test(input)) return { email: null, name: null };
  const { address, name } = splitMailbox(input);
  return { email: address === null ? null : normalizeEmail(address), name: name === null ? null : memberName(name) };
}

const CONTROLS = new RegExp(CONTROL.source, 'g');

/**
 * A member's name as given with an address (`subscribe`, the API, the panel's pasted lines and
 * CSV files): RFC 2047 encoded words (`=?utf-8?q?Jos=C3=A9?=`, as a From header gives it) decoded,
 * control characters (raw, or decoded from =00 or =0A) made spaces so that it is one line and
 * PostgreSQL takes it, at most 200 characters; null when nothing is left.
 */
export function memberName(raw: string): string | null {
  return decodeHeaderWords(raw).replace(CONTROLS, ' ').trim().slice(0, 200) || null;
}

/**
 * `Name <addr>`, `"Name" <addr>` or a bare address, split (not checked): one mailbox only. A name
 * with `<` or `>` outside quotes is refused (address null), so that `Ann <a@x>, Ben <b@y>` is an
 * error rather than Ben named "Ann <a@x>, Ben" with Ann dropped. Quoted pairs (`\"`) are undone.
 */
export function splitMailbox(input: string): { address: string | null; name: string | null } {
  const line = input.trim();
  // The name: words and quoted strings (RFC 5322's phrase), so `Ann "The Bee" Apiarist` is one.
  const angle = /^((?:[^<>"]|"(?:[^"\\]|\\.)*")*)<([^<>]+)>$/s.exec(line);
  if (!angle) return { address: /[<>]/.test(line) ? null : line, name: null };
  const name = angle[1].replace(/"((?:[^"\\]|\\.)*)"/gs, (_, quoted: string) => quoted.replace(/\\(.)/gs, '$1')).trim() || null;
  return { address: angle[2], name };
}
