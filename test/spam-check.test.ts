/*
 * The spam check (src/core/spam-check.ts) end to end: posts over a real SMTP socket to the ingest
 * listener, scanned by a real rspamd (test/helpers/rspamd.ts), decided by the lists' thresholds.
 * The scanner's failures are real sockets too: a port nobody listens on, a server that never
 * answers, one that answers 500 or something that is not a verdict.
 */

import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseConfig } from '../src/config.ts';
import { parseListSettings, setListSettings } from '../src/core/list-settings.ts';
import { scannerEndpoint, verdict } from '../src/core/spam-check.ts';
import { createList, findList } from '../src/db/lists.ts';
import { log } from '../src/log.ts';
import type { PostChecks } from '../src/mail/post-checks.ts';
import { spamCheckFailures } from '../src/metrics.ts';
import { loggedIn } from './helpers/browser.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { freePort, GTUBE, RSPAMD_PASSWORD, SPAMMY_SCORE, SPAMMY_SUBJECT, startRspamd, type RunningRspamd } from './helpers/rspamd.ts';
import { message, sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';

let db: TestDatabase;
let rspamd: RunningRspamd;
let rspamdReadyMs: number;
const ingests: RunningIngest[] = [];
const servers: { close(): unknown }[] = [];

/** An ingest listener whose spam check goes to `url` (SPAM_CHECK_URL) with these settings. */
async function ingest(url: string, opts: { fail?: 'accept' | 'tempfail'; timeoutMs?: number } = {}) {
  const settings = { ...parseConfig({ MAIL_DOMAIN: 'lists.example.org' }), spamCheck: { url, fail: opts.fail ?? 'accept', timeoutMs: opts.timeoutMs ?? 10_000 } };
  const running = await startIngest(db.pool, { settings });
  ingests.push(running);
  return running.port;
}

async function newList(local: string) {
  return createList(db.pool, { address: `${local}@lists.example.org`, name: local, description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: ['owner@example.org'] });
}

async function archived(messageId: string): Promise<{ checks: PostChecks | null } | undefined> {
  return (await db.pool.query('select checks from messages where message_id = $1', [messageId])).rows[0];
}
async function held(messageId: string) {
  return (await db.pool.query('select id, reason, rule, checks from held_messages where message_id = $1', [messageId])).rows[0];
}
async function rejected(messageId: string) {
  return (await db.pool.query('select reason, recipients, length(raw) as kept from ingest_errors where message_id = $1', [messageId])).rows;
}

/** How many messages rspamd has scanned (its controller's /stat). */
async function scanned(): Promise<number> {
  const res = await fetch(`${rspamd.bareUrl}/stat`, { headers: { Password: RSPAMD_PASSWORD } });
  return ((await res.json()) as { scanned: number }).scanned;
}

async function failures(reason: string): Promise<number> {
  return (await spamCheckFailures.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

/** What the listener logged (warnings and up) while `fn` ran. */
async function logged<T>(fn: () => Promise<T>): Promise<{ result: T; lines: string }> {
  const lines: string[] = [];
  const level = log.level;
  log.level = 'warn';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
    lines.push(String(chunk));
    return true;
  });
  try {
    return { result: await fn(), lines: lines.join('') };
  } finally {
    spy.mockRestore();
    log.level = level;
  }
}

/** A TCP server that takes connections and never says a word: a scanner that hangs. */
async function silentServer(): Promise<number> {
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => sockets.push(s));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push({ close: () => (sockets.forEach((s) => s.destroy()), server.close()) });
  return (server.address() as net.AddressInfo).port;
}

/** An HTTP server that answers every request with this status and body. */
async function answeringServer(status: number, body: string): Promise<number> {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(status, { 'Content-Type': 'application/json' }).end(body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  return (server.address() as net.AddressInfo).port;
}

/** A post from alice; `to` is the envelope, `toHeader` the To field (default: the envelope's). */
const post = (port: number, id: string, opts: { subject?: string; body?: string; to?: string[]; toHeader?: string[] } = {}) => {
  const to = opts.to ?? ['dev@lists.example.org'];
  return sendRaw(port, { from: 'alice@example.org', to }, message({
    id, from: 'alice@example.org', to: (opts.toHeader ?? to).join(', '), subject: opts.subject ?? 'Release planning',
    body: opts.body ?? 'Shall we meet on Thursday to plan the release?\n', date: new Date().toUTCString().replace('GMT', '+0000'),
  }));
};

beforeAll(async () => {
  db = await testDatabase();
  await newList('dev');
  await newList('ops');
  const started = performance.now();
  rspamd = await startRspamd();
  rspamdReadyMs = Math.round(performance.now() - started);
}, 60_000);

afterAll(async () => {
  for (const i of ingests) await i.stop();
  for (const s of servers) s.close();
  await rspamd?.stop();
  await db?.drop();
});

describe('the spam check with a real rspamd', () => {
  it('starts rspamd quickly enough for a test', () => {
    // Printed so that CI's log shows what the real scanner costs the suite.
    console.info(`rspamd ready in ${rspamdReadyMs} ms`);
    expect(rspamdReadyMs).toBeLessThan(30_000);
  });

  it('accepts a clean post and stores its score, action and symbols, with the envelope told to rspamd', async () => {
    const port = await ingest(rspamd.url);
    const res = await post(port, 'clean@example.org');
    expect(res.response).toMatch(/^250 /);
    const row = await archived('clean@example.org');
    expect(row?.checks?.spamUnchecked).toBeUndefined();
    const spam = row!.checks!.spam!;
    expect(spam.score).toBeLessThan(6);
    // Below "add header"; without the client's IP and HELO (LMTP behind no XFORWARD, a test
    // socket) rspamd's hostname checks may add enough for "greylist".
    expect(['no action', 'greylist']).toContain(spam.action);
    // rspamd found these by comparing the message with the envelope it was given (From, Rcpt).
    expect(spam.symbols).toEqual(expect.arrayContaining(['FROM_EQ_ENVFROM', 'TO_MATCH_ENVRCPT_ALL']));
    expect(spam.symbols).not.toContain('LISTKEEPER_TEST_SPAMMY');
  });

  it('holds a post whose score reaches the list\'s hold threshold, saying why, and shows the verdict to the moderator', async () => {
    const port = await ingest(rspamd.url);
    const res = await post(port, 'spammy@example.org', { subject: `Cheap watches ${SPAMMY_SUBJECT}` });
    expect(res.response).toMatch(/^250 /);
    expect(await archived('spammy@example.org')).toBeUndefined();
    const h = await held('spammy@example.org');
    expect(h.rule).toBe('spam');
    // The test rule's 9, give or take what rspamd's other rules (the client's address) add or take away.
    expect(h.checks.spam.score).toBeGreaterThanOrEqual(SPAMMY_SCORE - 1);
    expect(h.checks.spam.score).toBeGreaterThanOrEqual(6);
    expect(h.checks.spam.symbols[0]).toBe('LISTKEEPER_TEST_SPAMMY');
    expect(h.reason).toBe(`spam score ${h.checks.spam.score} ≥ 6 (symbols: ${h.checks.spam.symbols.slice(0, 8).join(', ')}${h.checks.spam.symbols.length > 8 ? ', …' : ''})`);
    expect(h.reason).toMatch(/^spam score \d+(\.\d+)? ≥ 6 \(symbols: LISTKEEPER_TEST_SPAMMY, /);

    const web: RunningWeb = await startWeb(db);
    try {
      const owner = await loggedIn(db, web.url, 'owner@example.org');
      const page = await owner.get(`/admin/lists/dev@lists.example.org/held/${h.id}`);
      expect(page.status).toBe(200);
      expect(page.text).toContain(`<strong>${h.checks.spam.score}</strong>`);
      expect(page.text).toContain('(rspamd: add header)');
      expect(page.text).toContain('<code>LISTKEEPER_TEST_SPAMMY</code>');
    } finally {
      await web.stop();
    }
  });

  it('refuses a post over the reject threshold with 550 5.7.1 and keeps it among rejected mail', async () => {
    const port = await ingest(rspamd.url);
    const res = await post(port, 'gtube@example.org', { subject: 'Test', body: `${GTUBE}\n` });
    expect(res.ok).toBe(false);
    expect(res.responseCode).toBe(550);
    expect(res.response).toMatch(/5\.7\.1 spam score 15 ≥ 15 \(symbols: GTUBE\)/);
    expect(await archived('gtube@example.org')).toBeUndefined();
    expect(await held('gtube@example.org')).toBeUndefined();
    const kept = await rejected('gtube@example.org');
    expect(kept).toHaveLength(1);
    expect(kept[0].reason).toMatch(/refused by the spam rule: spam score 15 ≥ 15/);
    expect(kept[0].recipients).toEqual(['dev@lists.example.org']);
    expect(kept[0].kept).toBeGreaterThan(0);
  });

  it('follows each list\'s thresholds: off on one list, lowered on another, one scan for a cross-post', async () => {
    const ops = (await findList(db.pool, 'ops'))!;
    await setListSettings(db.pool, ops, parseListSettings([['spam_hold_score', 'off'], ['spam_reject_score', '']]), { actor: 'test' });
    expect(await findList(db.pool, 'ops')).toMatchObject({ spam_hold_score: null, spam_reject_score: null });
    const port = await ingest(rspamd.url);
    // The same spammy post to both lists: dev holds it, ops (thresholds off) takes it.
    const both = ['dev@lists.example.org', 'ops@lists.example.org'];
    const scannedBefore = await scanned();
    const res = await post(port, 'cross@example.org', { subject: `Offer ${SPAMMY_SUBJECT}`, to: both });
    expect(res.response).toMatch(/^250 /);
    expect(await scanned()).toBe(scannedBefore + 1);
    const row = await archived('cross@example.org');
    // Both lists were the envelope's recipients (Rcpt twice): every To address matches one.
    expect(row!.checks!.spam!.symbols).toEqual(expect.arrayContaining(['LISTKEEPER_TEST_SPAMMY', 'TO_MATCH_ENVRCPT_ALL']));
    expect((await held('cross@example.org')).rule).toBe('spam');
    // The same To sent to ops alone: rspamd sees that only some of them were the envelope's.
    await post(port, 'ops-only@example.org', { to: ['ops@lists.example.org'], toHeader: both });
    expect((await archived('ops-only@example.org'))!.checks!.spam!.symbols).toContain('TO_MATCH_ENVRCPT_SOME');

    // A lower threshold holds a post rspamd itself finds clean.
    const dev = (await findList(db.pool, 'dev'))!;
    await setListSettings(db.pool, dev, parseListSettings([['spam_hold_score', '-50']]), { actor: 'test' });
    try {
      await post(port, 'strict@example.org');
      expect((await held('strict@example.org')).reason).toMatch(/^spam score -?\d+(\.\d+)? ≥ -50/);
    } finally {
      // As `list set` does, from the list as it is now (a list read before the change above is refused).
      await setListSettings(db.pool, (await findList(db.pool, 'dev'))!, parseListSettings([['spam_hold_score', '6']]), { actor: 'test' });
    }
  });

  it('gets no verdict without the controller\'s password, and says so', async () => {
    const port = await ingest(rspamd.bareUrl);
    await post(port, 'no-password@example.org');
    expect((await archived('no-password@example.org'))!.checks!.spamUnchecked).toMatch(/HTTP 401: Unauthorized/);
  });
});

describe('mail to the command addresses', () => {
  it('answers no command the scanner scores as high as a post the list holds, keeps it with why, and answers the others', async () => {
    const port = await ingest(rspamd.url);
    await newList('cmd'); // its thresholds the defaults: hold from 6
    const send = (to: string, id: string, subject: string) => sendRaw(port, { from: 'alice@example.org', to: [to] }, message({
      id, from: 'alice@example.org', to, subject, date: new Date().toUTCString().replace('GMT', '+0000'),
    }));
    // The answers (a confirmation request, help) would carry the Subject to whoever From names.
    for (const [to, id] of [['cmd-subscribe@lists.example.org', 'spammy-subscribe@example.org'], ['cmd-request@lists.example.org', 'spammy-help@example.org']]) {
      expect((await send(to, id, `help ${SPAMMY_SUBJECT} cheap watches`)).response).toMatch(/^250 /);
      expect((await rejected(id)).map((r) => r.reason)).toEqual([expect.stringMatching(/^spam score \d+(\.\d+)? ≥ 6 \(symbols: LISTKEEPER_TEST_SPAMMY, .*\): not answered$/)]);
    }
    // One message to two command addresses is scanned once.
    const before = await scanned();
    const both = ['cmd-request@lists.example.org', 'cmd-unsubscribe@lists.example.org'];
    expect((await sendRaw(port, { from: 'alice@example.org', to: both }, message({ id: 'spammy-both@example.org', from: 'alice@example.org', to: both.join(', '), subject: `unsubscribe ${SPAMMY_SUBJECT}` }))).response).toMatch(/^250 /);
    expect(await scanned()).toBe(before + 1);
    expect(await rejected('spammy-both@example.org')).toHaveLength(2);
    expect((await send('cmd-request@lists.example.org', 'plain-help@example.org', 'help')).response).toMatch(/^250 /);
    const { rows } = await db.pool.query<{ subject: string }>(
      `select substring(convert_from(m.raw, 'UTF8') from 'Subject: ([^\r\n]*)') as subject from outbox o join outbound_mail m on m.id = o.mail_id where o.recipient = 'alice@example.org'`);
    expect(rows).toEqual([{ subject: 'Re: help' }]);
  });
});

describe('when the scanner does not answer', () => {
  it('accepts the post unscanned, logs it without the password, and counts it (SPAM_CHECK_FAIL=accept)', async () => {
    const url = `http://:not-for-logs@127.0.0.1:${await freePort()}`;
    const port = await ingest(url);
    const before = await failures('connection');
    const { result: res, lines } = await logged(() => post(port, 'down@example.org'));
    expect(res.response).toMatch(/^250 /);
    const checks = (await archived('down@example.org'))!.checks!;
    expect(checks.spam).toBeUndefined();
    expect(checks.spamUnchecked).toMatch(/ECONNREFUSED/);
    expect(await failures('connection')).toBe(before + 1);
    expect(lines).toMatch(/spam check failed: post taken unscanned/);
    expect(lines).toContain(':***@127.0.0.1');
    expect(lines).not.toContain('not-for-logs');
  });

  it('answers 451 4.7.1 and stores nothing with SPAM_CHECK_FAIL=tempfail', async () => {
    const port = await ingest(`http://127.0.0.1:${await freePort()}`, { fail: 'tempfail' });
    const before = await failures('connection');
    const res = await post(port, 'tempfail@example.org');
    expect(res.ok).toBe(false);
    expect(res.responseCode).toBe(451);
    expect(res.response).toMatch(/4\.7\.1 the spam check is not available/);
    expect(await archived('tempfail@example.org')).toBeUndefined();
    expect(await held('tempfail@example.org')).toBeUndefined();
    expect(await rejected('tempfail@example.org')).toHaveLength(0);
    expect(await failures('connection')).toBe(before + 1);
  });

  it('gives up on a scanner that hangs at the deadline', async () => {
    const port = await ingest(`http://127.0.0.1:${await silentServer()}`, { timeoutMs: 300 });
    const before = await failures('timeout');
    const started = performance.now();
    const res = await post(port, 'slow@example.org');
    const took = performance.now() - started;
    expect(res.response).toMatch(/^250 /);
    expect(took).toBeGreaterThanOrEqual(300);
    expect(took).toBeLessThan(3000);
    expect((await archived('slow@example.org'))!.checks!.spamUnchecked).toMatch(/no answer within 300 ms/);
    expect(await failures('timeout')).toBe(before + 1);
  });

  it('treats a 5xx and an answer that is not a verdict as no answer', async () => {
    const failing = await ingest(`http://127.0.0.1:${await answeringServer(500, '{"error":"worker died"}')}`);
    const garbage = await ingest(`http://127.0.0.1:${await answeringServer(200, '<html>It works!</html>')}`);
    const [status, response] = [await failures('status'), await failures('response')];
    expect((await post(failing, 'status-500@example.org')).response).toMatch(/^250 /);
    expect((await post(garbage, 'garbage@example.org')).response).toMatch(/^250 /);
    expect((await archived('status-500@example.org'))!.checks!.spamUnchecked).toMatch(/HTTP 500: worker died/);
    expect((await archived('garbage@example.org'))!.checks!.spamUnchecked).toMatch(/JSON/);
    expect(await failures('status')).toBe(status + 1);
    expect(await failures('response')).toBe(response + 1);
  });
});

describe('the pieces', () => {
  it('posts to /checkv2 under the URL\'s path, with the password taken out of the URL', () => {
    const e = scannerEndpoint('http://:s3cret%21@127.0.0.1:11334');
    expect(e.url.href).toBe('http://127.0.0.1:11334/checkv2');
    expect(e.password).toBe('s3cret!');
    expect(scannerEndpoint('https://scanner.example.org/rspamd/').url.href).toBe('https://scanner.example.org/rspamd/checkv2');
    expect(scannerEndpoint('http://127.0.0.1:11333/checkv2')).toEqual({ url: new URL('http://127.0.0.1:11333/checkv2'), password: null });
  });

  it('keeps the score, the action and the symbols by score, highest first', () => {
    expect(verdict({ score: 7.123, action: 'add header', symbols: { MIME_GOOD: { score: -0.1 }, ARC_NA: { score: 0 }, BAYES_SPAM: { score: 5.1 }, R_SPF_FAIL: { score: 1 } } }))
      .toEqual({ score: 7.12, action: 'add header', symbols: ['BAYES_SPAM', 'R_SPF_FAIL', 'ARC_NA', 'MIME_GOOD'] });
    expect(() => verdict({ error: 'oops' })).toThrow(/not an rspamd verdict/);
    expect(() => verdict({ score: '7', action: 'reject' })).toThrow(/not an rspamd verdict/);
  });

  it('takes thresholds by name as `list set` does: a score, or off', () => {
    expect(parseListSettings([['spam_hold_score', '4.5'], ['spam_reject_score', 'off']])).toEqual({ spam_hold_score: 4.5, spam_reject_score: null });
    expect(() => parseListSettings([['spam_hold_score', 'high']])).toThrow(/spam_hold_score: must be a score from -100 to 1000, or off/);
  });
});
