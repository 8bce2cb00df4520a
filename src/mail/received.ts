/*
 * The Received field of the hop into listkeeper (RFC 5321 §4.4), put on top of every copy while
 * the archive keeps the bytes as they arrived. Its shape is the one Postfix writes, which every
 * trace parser (SpamAssassin, rspamd) reads:
 *
 *   from helo.example (rdns.example [192.0.2.1]) by lists.example.org
 *     with ESMTPS (TLS1.3 TLS_AES_256_GCM_SHA384) id 1a2b3c-1; Wed, 02 Dec 2026 15:00:00 +0000
 *
 * Everything in it came from the client (HELO, the reverse name of its address), so each part
 * is checked or made safe: the field stays one line of printable ASCII that parses, whatever was
 * said. No "for" clause: a post to several lists, or with Bcc recipients, names none of them.
 */

import net from 'node:net';
import type { Peer } from './post-checks.ts';

export interface ReceivedOptions {
  /** our name: SMTP_HELO_NAME */
  by: string;
  /** the id of the transaction at our end (the "queued as" of the 250 reply) */
  id?: string | null;
  date: Date;
}

const DOMAIN = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?$/i;

/** The value of the Received field (without "Received: "), one line. */
export function receivedField(peer: Peer, o: ReceivedOptions): string {
  const literal = peer.ip ? addressLiteral(peer.ip) : null;
  const hostname = peer.hostname && DOMAIN.test(peer.hostname) && peer.hostname.toLowerCase() !== 'unknown' ? peer.hostname.toLowerCase() : null;
  const helo = peer.helo ? usableHelo(peer.helo) : null;
  const from = helo ?? hostname ?? literal ?? 'unknown';
  // TCP-info as Postfix writes it: the verified name (or "unknown") and the address; a HELO that
  // could not stand as the from-domain is kept here, escaped, for whoever reads the trace.
  const info = [literal ? `${hostname ?? 'unknown'} ${literal}` : null, peer.helo && !helo ? `helo=${commentText(peer.helo, 64)}` : null].filter(Boolean);
  const protocol = (peer.protocol ?? (peer.tls ? 'ESMTPS' : 'SMTP')).replace(/[^A-Za-z0-9-]/g, '').slice(0, 16) || 'SMTP';
  const tls = peer.tls ? ` (${commentText(peer.tls.protocol.replace(/^TLSv/, 'TLS'), 16)} ${commentText(peer.tls.cipher, 64)})` : '';
  const id = o.id ? o.id.replace(/[^A-Za-z0-9!#$%&'*+/=?^_`{|}~-]/g, '').slice(0, 64) : '';
  return [
    `from ${from}${info.length ? ` (${info.join(' ')})` : ''}`,
    `by ${o.by}`,
    `with ${protocol}${tls}`,
    ...(id ? [`id ${id}`] : []),
  ].join(' ') + `; ${rfc5322Date(o.date)}`;
}

/** RFC 5321 §4.1.3: [192.0.2.1], [IPv6:2001:db8::1]. */
export function addressLiteral(ip: string): string | null {
  const bare = ip.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '');
  const family = net.isIP(bare);
  if (family === 4) return `[${bare}]`;
  if (family === 6) return `[IPv6:${bare.toLowerCase()}]`;
  return null;
}

/** The HELO as the from-domain when it is a domain or an address literal (a bare IP becomes one). */
function usableHelo(helo: string): string | null {
  const inner = /^\[(?:ipv6:)?([^\]]+)\]$/i.exec(helo)?.[1] ?? helo;
  if (net.isIP(inner)) return addressLiteral(inner);
  return DOMAIN.test(helo) ? helo.toLowerCase().replace(/\.$/, '') : null;
}

/**
 * Text safe inside a comment, and short: printable ASCII without parentheses or backslashes
 * (each becomes "?"), at most `max` characters, so the whole field stays well under 998 octets.
 */
function commentText(s: string, max: number): string {
  return s.slice(0, max).replace(/[^\x21-\x7e]|[()\\]/g, '?');
}

/** RFC 5322 date-time in UTC: Wed, 02 Dec 2026 15:00:00 +0000. */
function rfc5322Date(d: Date): string {
  return d.toUTCString().replace(/GMT$/, '+0000');
}
