/*
 * One purge request to the cache in front of the archive (docs/operations.md "Behind Varnish"):
 *
 *   PURGE <PURGE_URL>
 *   xkey-purge: list-3 latest-3 month-3-2026-12 thread-41 message-97
 *
 * Keys are separated by single spaces, as Varnish's vmod-xkey reads them (xkey.purge()); the VCL
 * for plain Varnish without the vmod turns the same header into a ban. Any 2xx answer means the
 * cache dropped the pages; anything else, or no answer before the deadline, is a failure.
 */

import { within } from '../deadline.ts';
import { redactUrl } from '../log.ts';

export const PURGE_METHOD = 'PURGE';
export const PURGE_HEADER = 'xkey-purge';
/** Longest key header we send: Varnish refuses request headers over http_req_hdr_len (8 KB by default). */
export const MAX_HEADER_CHARS = 4000;

/** Keys in groups that each fit one request's header. */
export function purgeChunks(keys: string[]): string[][] {
  const chunks: string[][] = [];
  let chunk: string[] = [];
  let length = 0;
  for (const key of keys) {
    if (chunk.length > 0 && length + 1 + key.length > MAX_HEADER_CHARS) {
      chunks.push(chunk);
      chunk = [];
      length = 0;
    }
    length += (chunk.length ? 1 : 0) + key.length;
    chunk.push(key);
  }
  if (chunk.length) chunks.push(chunk);
  return chunks;
}

/** The URL without its user and password, and those as a Basic Authorization header (fetch refuses URLs with credentials). */
function target(url: string): { url: string; authorization: string | null } {
  const u = new URL(url);
  if (!u.username && !u.password) return { url, authorization: null };
  const auth = `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}`;
  u.username = '';
  u.password = '';
  return { url: u.toString(), authorization: auth };
}

/** Sends one purge; throws with a message fit for the queue's last_error when the cache did not confirm it. */
export async function sendPurge(url: string, keys: string[], timeoutMs: number, stop?: AbortSignal): Promise<void> {
  const t = target(url);
  const controller = new AbortController();
  stop?.addEventListener('abort', () => controller.abort(), { once: true });
  const work = (async () => {
    const res = await fetch(t.url, {
      method: PURGE_METHOD,
      headers: { [PURGE_HEADER]: keys.join(' '), ...(t.authorization ? { authorization: t.authorization } : {}) },
      signal: controller.signal,
      redirect: 'manual',
    });
    const text = await res.text().catch(() => '');
    if (res.status < 200 || res.status > 299) {
      throw new Error(`${redactUrl(url)} answered ${res.status}${text ? `: ${text.replace(/\s+/g, ' ').trim().slice(0, 200)}` : ''}`);
    }
  })();
  try {
    await within(work, timeoutMs, `the purge endpoint ${redactUrl(url)}`);
  } catch (err) {
    // The deadline passed: drop the connection rather than leave it to the endpoint.
    controller.abort();
    const e = err as Error & { cause?: { code?: string } };
    throw new Error(e.cause?.code ? `${redactUrl(url)}: ${e.cause.code}` : e.message, { cause: err });
  }
}
