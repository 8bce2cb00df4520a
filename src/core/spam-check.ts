/*
 * The spam check: each post goes once, whatever the number of lists it was sent to, to rspamd's
 * /checkv2 (SPAM_CHECK_URL), with the SMTP envelope in the protocol's headers (IP, Helo, From,
 * Rcpt, Queue-Id…; https://rspamd.com/doc/developers/protocol.html). The score, rspamd's action
 * and the symbols are stored with the post; each list's thresholds decide what they mean
 * (moderation-rules.ts, rule "spam"). A scanner that does not answer within the deadline,
 * refuses the connection, fails or answers something that is not a verdict leaves the post
 * unscanned (SPAM_CHECK_FAIL=accept: logged and counted) or makes the sender try again later
 * (SPAM_CHECK_FAIL=tempfail: 451 4.7.1, nothing stored).
 */

import http from 'node:http';
import https from 'node:https';
import { TemporaryFailure } from '../errors.ts';
import { redactSecrets, type Logger } from '../log.ts';
import type { Peer, SpamChecks } from '../mail/post-checks.ts';
import { spamCheckFailures, spamCheckSeconds } from '../metrics.ts';
import type { CoreSettings } from './settings.ts';

export type SpamCheckSettings = CoreSettings['spamCheck'];

/** What the scan needs of a post (post-checks.ts's PostCheckInput has it). */
export interface ScanInput {
  raw: Buffer;
  envelopeFrom: string | null;
  peer: Peer | null;
  /** the lists it was posted to: the envelope recipients rspamd is told about */
  lists: { address: string }[];
  log: Logger;
}

/** What went wrong with a scan, as the metric's label says it. */
export type ScanFailureReason = 'timeout' | 'connection' | 'status' | 'response';

export class ScanFailure extends Error {
  constructor(
    readonly reason: ScanFailureReason,
    message: string,
  ) {
    super(message);
  }
}

/** rspamd's answers are a few kilobytes; anything this large is not one. */
const MAX_ANSWER = 4 * 1024 * 1024;

/**
 * Scans one post. Returns {} when no scanner is configured, { spam } with the verdict, or
 * { spamUnchecked } saying why there is none; throws a TemporaryFailure (451 4.7.1) instead of the
 * last when SPAM_CHECK_FAIL=tempfail.
 */
export async function scanForSpam(input: ScanInput, settings: SpamCheckSettings): Promise<{ spam?: SpamChecks; spamUnchecked?: string }> {
  if (!settings.url) return {};
  const started = performance.now();
  try {
    const spam = await askRspamd(settings.url, envelopeHeaders(input), input.raw, settings.timeoutMs);
    spamCheckSeconds.observe((performance.now() - started) / 1000);
    input.log.debug({ score: spam.score, action: spam.action }, 'spam check');
    return { spam };
  } catch (err) {
    if (!(err instanceof ScanFailure)) throw err;
    spamCheckFailures.inc({ reason: err.reason });
    const fields = { spamCheckUrl: settings.url, reason: err.reason, problem: err.message, ms: Math.round(performance.now() - started) };
    if (settings.fail === 'tempfail') {
      input.log.warn(fields, 'spam check failed: post refused for now with 451 (SPAM_CHECK_FAIL=tempfail)');
      throw new TemporaryFailure('4.7.1 the spam check is not available at the moment, try again later', 'spam_check_unavailable');
    }
    input.log.warn(fields, 'spam check failed: post taken unscanned (SPAM_CHECK_FAIL=accept)');
    return { spamUnchecked: `the spam scanner gave no verdict (${err.message})` };
  }
}

/** The protocol's request headers for the envelope; a value appears only when it is known. */
function envelopeHeaders(input: ScanInput): Record<string, string | string[]> {
  const h: Record<string, string | string[]> = { 'User-Agent': 'listkeeper' };
  const peer = input.peer;
  if (peer?.ip) h.IP = peer.ip;
  if (peer?.helo) h.Helo = peer.helo;
  if (peer?.hostname) h.Hostname = peer.hostname;
  if (peer?.tls) {
    h['TLS-Version'] = peer.tls.protocol;
    h['TLS-Cipher'] = peer.tls.cipher;
  }
  // The null reverse-path <> of a delivery report is sent as an empty From, as MTAs do.
  h.From = input.envelopeFrom ?? '';
  h.Rcpt = input.lists.map((l) => l.address);
  const session = (input.log.bindings() as { session?: unknown }).session;
  if (typeof session === 'string') h['Queue-Id'] = session;
  for (const [k, v] of Object.entries(h)) h[k] = Array.isArray(v) ? v.map(headerValue) : headerValue(v);
  return h;
}

/**
 * A value fit for an HTTP header line: no control characters (HELO and the envelope come from the
 * client), and UTF-8 (international addresses) sent as its bytes, which node writes as latin1.
 */
function headerValue(v: string): string {
  return Buffer.from(v.replace(/[\x00-\x1f\x7f]/g, ''), 'utf8').toString('latin1');
}

/** Where to POST, and the controller's password: the URL's user-info, never sent as Basic auth. */
export function scannerEndpoint(base: string): { url: URL; password: string | null } {
  const url = new URL(base);
  const password = url.password ? decodeURIComponent(url.password) : null;
  url.username = '';
  url.password = '';
  if (!url.pathname.endsWith('/checkv2')) url.pathname = `${url.pathname.replace(/\/+$/, '')}/checkv2`;
  return { url, password };
}

/** One POST to /checkv2 under one deadline for everything: connecting, sending, the answer. */
export function askRspamd(base: string, headers: Record<string, string | string[]>, raw: Buffer, timeoutMs: number): Promise<SpamChecks> {
  const { url, password } = scannerEndpoint(base);
  return new Promise<SpamChecks>((resolve, reject) => {
    let settled = false;
    const settle = (err: Error | null, value?: SpamChecks) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) {
        reject(err instanceof ScanFailure ? err : new ScanFailure('connection', redactSecrets(err.message)));
        req.destroy();
      } else resolve(value!);
    };
    const req = (url.protocol === 'https:' ? https : http).request(url, {
      method: 'POST',
      headers: { ...headers, ...(password ? { Password: password } : {}), 'Content-Length': String(raw.length) },
    });
    const timer = setTimeout(() => settle(new ScanFailure('timeout', `no answer within ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (err) => settle(err));
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_ANSWER) settle(new ScanFailure('response', `an answer larger than ${MAX_ANSWER} bytes`));
        else chunks.push(chunk);
      });
      res.on('error', (err) => settle(err));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const status = res.statusCode ?? 0;
        if (status < 200 || status > 299) return settle(new ScanFailure('status', `HTTP ${status}${errorText(body)}`));
        try {
          settle(null, verdict(JSON.parse(body)));
        } catch (err) {
          settle(new ScanFailure('response', (err as Error).message));
        }
      });
    });
    req.end(raw);
  });
}

// rspamd explains its errors as {"error": "..."}.
function errorText(body: string): string {
  try {
    const e = (JSON.parse(body) as { error?: unknown }).error;
    return typeof e === 'string' ? `: ${e.slice(0, 200)}` : '';
  } catch {
    return '';
  }
}

/** A /checkv2 answer as we store it; anything else is not a verdict. Symbols by score, highest first. */
export function verdict(answer: unknown): SpamChecks {
  const a = answer as { score?: unknown; action?: unknown; symbols?: unknown } | null;
  if (!a || typeof a !== 'object' || typeof a.score !== 'number' || !Number.isFinite(a.score) || typeof a.action !== 'string') {
    throw new Error('the answer is not an rspamd verdict (no score or action)');
  }
  const symbols = a.symbols && typeof a.symbols === 'object' ? (a.symbols as Record<string, { score?: unknown }>) : {};
  const scored = Object.entries(symbols).map(([name, s]) => ({ name, score: typeof s?.score === 'number' ? s.score : 0 }));
  scored.sort((x, y) => y.score - x.score || x.name.localeCompare(y.name));
  return { score: Math.round(a.score * 100) / 100, action: a.action, symbols: scored.map((s) => s.name) };
}
