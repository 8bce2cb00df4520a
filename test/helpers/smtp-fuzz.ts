/*
 * The SMTP fuzz run: real messages (every .eml under test/fixtures, and CPython's
 * test_email corpus in test/fixtures/corpus/), each given a Message-ID of its own and then
 * damaged by one or two mutations, sent over real SMTP to the ingest listener for a list with
 * open posting. What must hold:
 *
 * - every input is answered 250 or 5xx: never 4xx, which would make the sender retry forever a
 *   message that will never be taken (a fault of the message is not a fault of the system);
 * - the listener stays up (a clean message gets 250 at the end);
 * - the exact bytes of every message answered 250 are stored (archived, held, or kept aside),
 *   in every list it was sent to, and an archived one comes back from /message-id/raw/.
 *
 * One in ten inputs names the list twice (once in capitals) and a second list, so that every accepted RCPT TO must get the message.
 */

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import { log } from '../../src/log.ts';
import { messageIdPath } from '../../src/mail/message-id.ts';
import { HEAVY, MUTATIONS, withMessageId } from './mail-mutations.ts';
import { random } from './random.ts';
import { ConnectionLost, SmtpSession, sentBytes, type Transaction } from './smtp-session.ts';

export interface FuzzCase {
  n: number;
  seed: string;
  mutations: string[];
  detail: string;
  rcpt: string[];
  raw: Buffer;
}

export interface FuzzOptions {
  port: number;
  pool: pg.Pool;
  /** the web app over the same database, for /message-id/raw/ */
  webUrl?: string;
  inputs: number;
  seed: number;
  /** two lists with open posting and public archives */
  lists: [string, string];
  sessions?: number;
  print?: (line: string) => void;
}

export interface FuzzReport {
  seed: number;
  tried: number;
  accepted: { archived: number; held: number; keptAside: number };
  refused: Record<string, number>;
  /** 4xx answers by code: each one a failure */
  temporary: Record<string, number>;
  /** the connection dropped, or no reply came within two minutes */
  noReply: number;
  serverUp: boolean;
  /** answers per mutation (the first one named, for stacked inputs) */
  byMutation: Record<string, Record<string, number>>;
  /** the slowest inputs, with how long their answer took */
  slowest: string[];
  failures: string[];
}

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures');

/** The messages the fuzz starts from: every .eml under test/fixtures and the corpus files. */
export function seedMessages(): { name: string; raw: Buffer }[] {
  const out: { name: string; raw: Buffer }[] = [];
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.eml') || (p.includes(`${path.sep}corpus${path.sep}`) && /^msg_.*\.txt$/.test(e.name))) {
        out.push({ name: path.relative(FIXTURES, p), raw: fs.readFileSync(p) });
      }
    }
  };
  walk(FIXTURES);
  return out;
}

/**
 * The inputs for a run: every seed as it is, every mutation at least once, then random ones (a
 * fifth of them stacked two deep; the heavy mutations drawn less often).
 */
export function fuzzCases(count: number, seed: number, lists: [string, string]): FuzzCase[] {
  const rnd = random(seed);
  const seeds = seedMessages();
  const names = Object.keys(MUTATIONS).filter((m) => m !== 'as-is');
  // Each light mutation four times in the draw, each heavy one once.
  const draw = names.flatMap((m) => (HEAVY.has(m) ? [m] : [m, m, m, m]));
  const pickOne = () => draw[rnd.int(0, draw.length - 1)];
  const cases: FuzzCase[] = [];
  for (let n = 0; n < count; n++) {
    const s = n < seeds.length ? seeds[n] : seeds[rnd.int(0, seeds.length - 1)];
    const chosen = n < seeds.length ? ['as-is'] : n < seeds.length + names.length ? [names[n - seeds.length]] : [pickOne()];
    if (n >= seeds.length + names.length && rnd.next() < 0.2) chosen.push(pickOne());
    let raw = withMessageId(s.raw, `fuzz-${seed}-${n}@fuzz.example`);
    const details: string[] = [];
    for (const m of chosen) {
      const r = MUTATIONS[m](raw, rnd);
      raw = r.raw;
      if (r.detail) details.push(r.detail);
    }
    const rcpt = rnd.next() < 0.1 ? [lists[0], lists[0].toUpperCase(), lists[1]] : [lists[0]];
    cases.push({ n, seed: s.name, mutations: chosen, detail: details.join('; '), rcpt, raw });
  }
  return cases;
}

const label = (c: FuzzCase) => `#${c.n} ${c.seed} [${c.mutations.join(' + ')}${c.detail ? `: ${c.detail}` : ''}]${c.rcpt.length > 1 ? ` to ${c.rcpt.join(', ')}` : ''}`;

interface Outcome {
  c: FuzzCase;
  t?: Transaction;
  lost?: string;
  ms: number;
}

export async function runFuzz(o: FuzzOptions): Promise<FuzzReport> {
  const cases = fuzzCases(o.inputs, o.seed, o.lists);
  const outcomes: Outcome[] = [];
  let next = 0;
  const session = async () => {
    let s: SmtpSession | null = null;
    while (next < cases.length) {
      const c = cases[next++];
      const t0 = Date.now();
      try {
        s ??= await SmtpSession.open(o.port, { timeoutMs: 120_000 });
        const t = await s.send('fuzz@senders.example', c.rcpt, c.raw);
        outcomes.push({ c, t, ms: Date.now() - t0 });
      } catch (err) {
        if (!(err instanceof ConnectionLost)) throw err;
        outcomes.push({ c, lost: err.message, ms: Date.now() - t0 });
        s?.destroy();
        s = null;
      }
      if ((next % 100) === 0) o.print?.(`fuzz: ${next}/${cases.length} inputs sent`);
    }
    await s?.quit();
  };
  await Promise.all(Array.from({ length: o.sessions ?? 4 }, session));
  outcomes.sort((a, b) => a.c.n - b.c.n);

  const report: FuzzReport = { seed: o.seed, tried: cases.length, accepted: { archived: 0, held: 0, keptAside: 0 }, refused: {}, temporary: {}, noReply: 0, serverUp: false, byMutation: {}, slowest: [], failures: [] };
  const stored = await storedBytes(o.pool);
  for (const { c, t, lost } of outcomes) {
    const m = (report.byMutation[c.mutations[0]] ??= {});
    const answer = t ? String(t.final.code) : 'none';
    m[answer] = (m[answer] ?? 0) + 1;
    if (lost || !t) {
      report.noReply++;
      report.failures.push(`${label(c)}: no answer (${lost})`);
      continue;
    }
    const code = t.final.code;
    if (code >= 400 && code < 500) {
      report.temporary[code] = (report.temporary[code] ?? 0) + 1;
      report.failures.push(`${label(c)}: answered ${code} at ${t.stage.toUpperCase()} "${t.final.text}"`);
      continue;
    }
    if (code !== 250 || t.stage !== 'dot') {
      report.refused[code] = (report.refused[code] ?? 0) + 1;
      continue;
    }
    // Every RCPT was answered 250: each of its lists must have the exact bytes.
    const refusedRcpt = t.rcpt.filter((r) => r.code !== 250);
    if (refusedRcpt.length) report.failures.push(`${label(c)}: RCPT answered ${refusedRcpt.map((r) => r.code).join(', ')} for a list with open posting`);
    const bytes = sentBytes(c.raw);
    const found = stored.get(sha256(bytes));
    if (!found) {
      report.failures.push(`${label(c)}: answered 250, but its ${bytes.length} bytes are nowhere (messages, held_messages, ingest_errors)`);
      continue;
    }
    if (found.where === 'archived') report.accepted.archived++;
    else if (found.where === 'held') report.accepted.held++;
    else report.accepted.keptAside++;
    const wanted = [...new Set(c.rcpt.map((r) => r.toLowerCase()))];
    const missing = found.where === 'kept-aside' ? [] : wanted.filter((l) => !found.lists.includes(l));
    if (missing.length) report.failures.push(`${label(c)}: answered 250, ${found.where} in ${found.lists.join(', ') || 'no list'} but not in ${missing.join(', ')}`);
    if (found.where === 'archived' && o.webUrl) {
      const res = await fetch(`${o.webUrl}/message-id/raw/${messageIdPath(found.messageId!)}`);
      const body = Buffer.from(await res.arrayBuffer());
      if (res.status !== 200 || !body.equals(bytes)) {
        report.failures.push(`${label(c)}: GET /message-id/raw/${messageIdPath(found.messageId!).slice(0, 80)} gave ${res.status} and ${body.equals(bytes) ? 'the same' : 'different'} bytes (${body.length} for ${bytes.length})`);
      }
    }
  }

  report.slowest = [...outcomes].sort((a, b) => b.ms - a.ms).slice(0, 3).map((x) => `${label(x.c)} ${x.ms} ms`);
  report.serverUp = await stillAnswers(o.port, o.lists[0]);
  if (!report.serverUp) report.failures.push('the listener no longer takes a clean message after the run');
  await explainTemporary(o, outcomes, report);
  return report;
}

function sha256(b: Buffer): string {
  return crypto.createHash('sha256').update(b).digest('hex');
}

interface Stored {
  where: 'archived' | 'held' | 'kept-aside';
  lists: string[];
  messageId: string | null;
}

/** Where each stored message is, by the SHA-256 of its bytes (hashed by PostgreSQL: no bytes travel). */
async function storedBytes(pool: pg.Pool): Promise<Map<string, Stored>> {
  const { rows } = await pool.query<{ h: string; where: Stored['where']; lists: string[]; message_id: string | null }>(
    `select encode(sha256(m.raw), 'hex') as h, 'archived' as where, m.message_id,
            array(select l.address from list_messages lm join lists l on l.id = lm.list_id where lm.message_id = m.id) as lists
       from messages m
     union all
     select encode(sha256(h.raw), 'hex'), 'held', h.message_id, array[l.address] from held_messages h join lists l on l.id = h.list_id
     union all
     select encode(sha256(e.raw), 'hex'), 'kept-aside', e.message_id, '{}'::text[] from ingest_errors e`);
  const map = new Map<string, Stored>();
  for (const r of rows) {
    const had = map.get(r.h);
    // Archived wins over a copy kept aside; lists add up (held in one list, archived in another).
    if (had && had.where === 'archived' && r.where !== 'archived') continue;
    map.set(r.h, { where: r.where, lists: [...new Set([...(had?.where === r.where ? had.lists : []), ...r.lists])], messageId: r.message_id });
  }
  return map;
}

async function stillAnswers(port: number, list: string): Promise<boolean> {
  try {
    const s = await SmtpSession.open(port, { timeoutMs: 20_000 });
    const t = await s.send('fuzz@senders.example', [list], Buffer.from(`From: a@senders.example\r\nSubject: still there\r\nMessage-ID: <alive-${Date.now()}@fuzz.example>\r\n\r\nok\r\n`));
    await s.quit();
    return t.final.code === 250;
  } catch {
    return false;
  }
}

/**
 * Sends each input that got a 4xx or no answer again, alone, and adds to its failure what the
 * listener logged meanwhile (warnings and errors), so the report says why.
 */
async function explainTemporary(o: FuzzOptions, outcomes: Outcome[], report: FuzzReport) {
  const again = outcomes.filter(({ t, lost }) => lost || (t && t.final.code >= 400 && t.final.code < 500)).slice(0, 200);
  if (again.length === 0) return;
  const level = log.level;
  const write = process.stdout.write;
  let captured = '';
  log.level = 'warn';
  process.stdout.write = ((chunk: string | Uint8Array) => {
    captured += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    return true;
  }) as typeof process.stdout.write;
  try {
    for (const { c } of again) {
      captured = '';
      let answer: string;
      try {
        const s = await SmtpSession.open(o.port, { timeoutMs: 120_000 });
        const t = await s.send('fuzz@senders.example', c.rcpt, c.raw);
        answer = `${t.final.code} ${t.final.text}`;
        await s.quit();
      } catch (err) {
        answer = (err as Error).message;
      }
      const lines = captured.split('\n').filter((l) => l.startsWith('{')).map((l) => {
        try {
          const e = JSON.parse(l) as { msg?: string; err?: { message?: string; code?: string } };
          return `${e.msg}${e.err ? `: ${e.err.message}${e.err.code ? ` (${e.err.code})` : ''}` : ''}`;
        } catch {
          return l.slice(0, 200);
        }
      });
      const i = report.failures.findIndex((f) => f.startsWith(`#${c.n} `));
      if (i >= 0) report.failures[i] += `; sent again: ${answer}; logged: ${[...new Set(lines)].join(' | ').slice(0, 600) || 'nothing'}`;
    }
  } finally {
    process.stdout.write = write;
    log.level = level;
  }
}

export function formatFuzzReport(r: FuzzReport): string {
  const refused = Object.entries(r.refused).map(([c, n]) => `${c} × ${n}`).join(', ') || 'none';
  const accepted = r.accepted.archived + r.accepted.held + r.accepted.keptAside;
  return [
    `smtp fuzz: seed ${r.seed}, inputs tried ${r.tried}`,
    `  accepted ${accepted} (archived ${r.accepted.archived}, held ${r.accepted.held}, kept aside ${r.accepted.keptAside}), refused ${refused}`,
    `  answered 4xx ${Object.entries(r.temporary).map(([c, n]) => `${c} × ${n}`).join(', ') || 'never'}, no answer (connection dropped or silent) ${r.noReply}, listener up at the end: ${r.serverUp ? 'yes' : 'NO'}`,
    `  answers by mutation: ${Object.entries(r.byMutation).map(([m, a]) => `${m} ${Object.entries(a).map(([c, n]) => `${c}×${n}`).join('/')}`).join(', ')}`,
    `  slowest: ${r.slowest.join('; ')}`,
    ...(r.failures.length ? [`  FAILURES (${r.failures.length}):`, ...r.failures.map((f) => `  - ${f}`)] : ['  all checks passed']),
  ].join('\n');
}
