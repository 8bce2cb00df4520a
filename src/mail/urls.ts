/*
 * Every link listkeeper puts in pages and mail (docs/urls.md), one function per URL shape: the web
 * routes (web/archive/routes.ts, web/subscription-routes.ts, web/subscribe-form.ts, web/auth/,
 * web/admin/) answer these shapes, and nothing else builds them. Each returns a path from the site's root; mail and feeds,
 * which need a full URL, put PUBLIC_URL in front with absoluteUrl(). Templates get the same
 * functions as the `urls` global (web/views.ts).
 *
 * KEY is a list's URL key (its local part when unique, else its address: LIST_KEY in db/list-key.ts);
 * MSGID a Message-ID without its brackets (message-id.ts messageIdPath).
 */

import { messageIdPath } from './message-id.ts';
import { wellFormed } from './attachment-type.ts';

/** `/lists/KEY/`: a list's archive. The @ of an address stays readable. */
export function listUrl(key: string): string {
  return `/lists/${encodeURIComponent(key).replace(/%40/g, '@')}/`;
}

/** `/lists/KEY/subscribe`: the subscription form (GET) and where it posts (POST). */
export function subscribeUrl(key: string): string {
  return `${listUrl(key)}subscribe`;
}

/** `/lists/KEY/members`: the read-only member list (the list's roster_visibility says for whom). */
export function rosterUrl(key: string): string {
  return `${listUrl(key)}members`;
}

/** `/lists/KEY/YYYY-MM/`: one month of a list. */
export function monthUrl(key: string, month: string): string {
  return `${listUrl(key)}${month}/`;
}

/** `/lists/KEY/YYYY-MM.mbox`: one month as mboxrd. */
export function monthMboxUrl(key: string, month: string): string {
  return `${listUrl(key)}${month}.mbox`;
}

/** `/lists/KEY/thread/ID`: one thread. */
export function threadUrl(key: string, threadId: number | string): string {
  return `${listUrl(key)}thread/${threadId}`;
}

/** `/lists/KEY/thread/ID.mbox`: one thread as mboxrd. */
export function threadMboxUrl(key: string, threadId: number | string): string {
  return `${listUrl(key)}thread/${threadId}.mbox`;
}

/** `/lists/KEY/feed.atom`: the list's Atom feed. */
export function feedUrl(key: string): string {
  return `${listUrl(key)}feed.atom`;
}

/** `?list=KEY`, which picks the list (and message) a Message-ID is shown in; '' without one. */
function inList(key: string | null | undefined): string {
  return key ? `?list=${encodeURIComponent(key)}` : '';
}

/** `/message-id/MSGID[?list=KEY]`: the permalink of a message. */
export function messageUrl(messageId: string, key?: string | null): string {
  return `/message-id/${messageIdPath(messageId)}${inList(key)}`;
}

/** `/message-id/raw/MSGID[?list=KEY]`: the bytes as received. */
export function rawMessageUrl(messageId: string, key?: string | null): string {
  return `/message-id/raw/${messageIdPath(messageId)}${inList(key)}`;
}

/** `/message-id/attachment/MSGID/N[/NAME][?list=KEY]`: one attachment (NAME is only for the reader). */
export function attachmentUrl(messageId: string, n: number | string, name?: string | null, key?: string | null): string {
  return `/message-id/attachment/${messageIdPath(messageId)}/${n}${name ? `/${encodeURIComponent(wellFormed(name))}` : ''}${inList(key)}`;
}

/** `/u/TOKEN`: a member's unsubscribe page and one-click unsubscribe (RFC 8058). */
export function unsubscribeUrl(token: string): string {
  return `/u/${token}`;
}

/** `/u/TOKEN/reenable`: a member disabled by bounces takes mail again. */
export function reenableUrl(token: string): string {
  return `${unsubscribeUrl(token)}/reenable`;
}

/** `/confirm/TOKEN`: double opt-in. */
export function confirmUrl(token: string): string {
  return `/confirm/${token}`;
}

/** `/login[?next=PATH]`: the login page, back to PATH once logged in. */
export function loginUrl(next?: string | null): string {
  return `/login${next ? `?next=${encodeURIComponent(next)}` : ''}`;
}

/** `/login/link/TOKEN[?next=PATH]`: a one-time login link, mailed or printed by `listkeeper admin`. */
export function loginLinkUrl(token: string, next?: string | null): string {
  return `/login/link/${token}${next ? `?next=${encodeURIComponent(next)}` : ''}`;
}

/** `/login/reset`: the page that mails a password reset link. */
export function passwordResetRequestUrl(): string {
  return '/login/reset';
}

/** `/login/reset/TOKEN[?next=PATH]`: a mailed link to choose a new password. */
export function passwordResetUrl(token: string, next?: string | null): string {
  return `/login/reset/${token}${next ? `?next=${encodeURIComponent(next)}` : ''}`;
}

/**
 * `/account/reauthenticate[?next=PATH]`: log in again before a change a stolen session could keep
 * the account or a list by; PATH is where the fresh login returns (the account page if none).
 */
export function reauthenticateUrl(next?: string | null): string {
  return `/account/reauthenticate${next ? `?next=${encodeURIComponent(next)}` : ''}`;
}

/** `/account/addresses/verify/TOKEN`: the mailed link that verifies an address added to an account. */
export function verifyAddressUrl(token: string): string {
  return `/account/addresses/verify/${token}`;
}

/**
 * `/admin/lists/ADDRESS[/PAGE]`: a list's pages in the panel (web/admin/routes.ts lists them);
 * without PAGE the base that templates extend (`listBase`), with '' its overview.
 */
export function adminListUrl(address: string, page?: string): string {
  return `/admin/lists/${encodeURIComponent(address).replace(/%40/g, '@')}${page === undefined ? '' : `/${page}`}`;
}

/** A path of this module as a full URL; `publicUrl` is PUBLIC_URL without its trailing slash. */
export function absoluteUrl(publicUrl: string, path: string): string {
  return `${publicUrl}${path}`;
}
