/*
 * The list headers every copy carries (RFC 2369, 2919, 5064, 8058; docs/delivery.md, "Every copy"). They are added at
 * the top of the author's header section; the author's own fields are not touched, so their DKIM
 * signature still verifies.
 */

import { asciiDomain, envelopeAddress, roleAddress, splitAddress } from './address.ts';
import { absoluteUrl, listUrl, messageUrl, subscribeUrl, unsubscribeUrl } from './urls.ts';

export interface ListIdentity {
  /** the list's address, e.g. dev@lists.example.org */
  address: string;
  /** the list's URL key (db/list-key.ts) */
  key: string;
  /** PUBLIC_URL, without a trailing slash */
  publicUrl: string;
}

/** `<dev.lists.example.org>` (RFC 2919: a dot-atom, so an international domain is in A-labels). */
export function listId(address: string): string {
  const parts = splitAddress(address)!;
  return `<${parts.local}.${asciiDomain(parts.domain)}>`;
}

/** Field names we set on every copy; an incoming copy of any of them is dropped to keep one of each. */
export const LIST_FIELDS = new Set([
  'list-id', 'list-post', 'list-help', 'list-subscribe', 'list-unsubscribe', 'list-unsubscribe-post',
  'list-archive', 'list-owner', 'archived-at', 'precedence',
]);

/**
 * The lines shared by every copy of one message on one list. Addresses are written with their
 * domain in A-labels (envelopeAddress): a list on an international domain in U-labels made every
 * copy's header raw UTF-8, which a relay without 8BITMIME refused for every member.
 */
export function listHeaderLines(list: ListIdentity, messageId: string | null): string[] {
  const address = envelopeAddress(list.address);
  const lines = [
    `List-Id: ${listId(list.address)}`,
    `List-Post: <mailto:${address}>`,
    `List-Help: <mailto:${roleAddress(address, 'request')}?subject=help>`,
    `List-Subscribe: <mailto:${roleAddress(address, 'subscribe')}>, <${absoluteUrl(list.publicUrl, subscribeUrl(list.key))}>`,
    `List-Archive: <${absoluteUrl(list.publicUrl, listUrl(list.key))}>`,
  ];
  if (messageId) lines.push(`Archived-At: <${absoluteUrl(list.publicUrl, messageUrl(messageId))}>`);
  lines.push('Precedence: list');
  return lines;
}

/** Whether mailbox providers act on the one-click header: RFC 8058 §3.1 needs an https URI, so PUBLIC_URL must be https. */
export function offersOneClick(publicUrl: string): boolean {
  return /^https:\/\//i.test(publicUrl);
}

/**
 * The lines that name one member: where their unsubscribe link goes, and List-Unsubscribe-Post
 * (one-click, RFC 8058) on every copy, as the interface promises. The link answers a POST at once
 * whatever its scheme; mailbox providers act on one-click only when it is https (RFC 8058 §3.1),
 * which `serve` warns about when PUBLIC_URL is not (offersOneClick).
 */
export function memberHeaderLines(list: ListIdentity, token: string | null): string[] {
  const mailto = `<mailto:${roleAddress(envelopeAddress(list.address), 'unsubscribe')}>`;
  if (!token) return [`List-Unsubscribe: ${mailto}`];
  return [`List-Unsubscribe: ${mailto}, <${absoluteUrl(list.publicUrl, unsubscribeUrl(token))}>`, 'List-Unsubscribe-Post: List-Unsubscribe=One-Click'];
}
