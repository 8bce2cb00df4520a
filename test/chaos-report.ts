/* What the crash loop (test/chaos-loop.ts) found: its figures, its checks, and how they print. */

import type pg from 'pg';
import type { PostRecord } from './chaos-load.ts';
import type { FaultRelay } from './helpers/fault-relay.ts';
import { problemLines } from './helpers/serve-process.ts';

export interface CrashLoopReport {
  seed: number;
  iterations: number;
  leaseSeconds: number | 'default';
  batchSize: number;
  posts: { sent: number; acknowledged: number; refused: Record<string, number>; unanswered: number; archivedUnacknowledged: number };
  acknowledgedButLost: string[];
  copies: {
    expected: number; delivered: number; missing: number; duplicates: number; duplicateBound: number;
    /** copies sent twice, by the crash they followed (index 0: the first kill or death) */
    duplicatesPerCrash: number[];
    /** copies sent twice before any crash, other than replies lost in an outage: there should be none */
    duplicatesWithoutCrash: number;
    /**
     * copies sent twice because the relay went down between taking a copy and the sender reading
     * its 250 (RFC 1047: no sender can tell this from a copy lost); at most one per connection
     */
    duplicatesAfterLostReply: number;
  };
  kills: number;
  diedOnItsOwn: { iteration: number; exit: string; lastProblems: string[] }[];
  faults: { relayOutages: number; backendTerminations: number; backendsEnded: number; dbRestarts: number };
  stalls: string[];
  /** rows in flight or due and unsent settleMs after the last restart */
  stuck: number;
  /** how long after the last restart the queue had nothing in flight or due */
  settledAfterMs: number | null;
  /** how long after the last restart every row was sent (or failed) */
  drainedAfterMs: number | null;
  sigtermMs: number | null;
  failures: string[];
}

/** Why a process died: the crash it printed (not JSON), else its last logged problems. */
export function lastWords(output: string): string[] {
  const lines = output.split('\n');
  const crash = lines.findIndex((l) => /^(node:|Error|TypeError|\S+Error:|\s+throw )/.test(l));
  if (crash >= 0) {
    // The error and where it was emitted: the frames under "Emitted 'error' event on …" name the culprit.
    const trace = lines.slice(crash, crash + 40).map((l) => l.trim()).filter((l) => l && !l.startsWith('{') && l !== '^');
    const emitted = trace.findIndex((l) => l.startsWith('Emitted'));
    return [...trace.filter((l) => !l.startsWith('at ')).slice(0, 4), ...(emitted >= 0 ? trace.slice(emitted + 1, emitted + 3) : [])];
  }
  return problemLines(output).slice(-3).map((p) => {
    const err = (JSON.parse(p.line) as { err?: { message?: string } }).err;
    return `${p.msg}${err?.message ? `: ${err.message}` : ''}`;
  });
}

/** Compares what was acknowledged, archived, queued and delivered; fills the report's figures. */
export async function account(pool: pg.Pool, relay: FaultRelay, posts: PostRecord[], crashMarks: number[], r: CrashLoopReport,
  outages: { cutMarks: { down: number; up: number }[]; connections: number } = { cutMarks: [], connections: 0 }) {
  r.posts.sent = posts.length;
  for (const p of posts) {
    if (p.outcome === 'acked') r.posts.acknowledged++;
    else if (p.outcome === 'unanswered') r.posts.unanswered++;
    else r.posts.refused[String(p.code)] = (r.posts.refused[String(p.code)] ?? 0) + 1;
    for (const code of p.rcptRefused) r.posts.refused[`${code} at RCPT`] = (r.posts.refused[`${code} at RCPT`] ?? 0) + 1;
  }
  const { rows: archived } = await pool.query<{ message_id: string; list: string }>(
    `select m.message_id, l.address as list from messages m join list_messages lm on lm.message_id = m.id join lists l on l.id = lm.list_id`);
  const inList = new Set(archived.map((a) => `${a.message_id} ${a.list}`));
  for (const p of posts) {
    if (p.outcome !== 'acked') {
      if (p.lists.some((l) => inList.has(`${p.id} ${l}`))) r.posts.archivedUnacknowledged++;
      continue;
    }
    const missing = p.lists.filter((l) => !inList.has(`${p.id} ${l}`));
    if (missing.length) r.acknowledgedButLost.push(`<${p.id}> (answered 250, not archived in ${missing.join(', ')})`);
  }
  // Every archived post owes a copy to every member of its list.
  const { rows: owed } = await pool.query<{ message_id: string; email: string }>(
    `select m.message_id, mb.email from messages m join list_messages lm on lm.message_id = m.id
       join members mb on mb.list_id = lm.list_id and mb.status = 'active' and mb.mode = 'each'`);
  const copies = relay.copies();
  r.copies.expected = owed.length;
  const missing: string[] = [];
  for (const c of owed) {
    const n = copies.get(`${c.message_id} ${c.email}`) ?? 0;
    if (n === 0) missing.push(`<${c.message_id}> to ${c.email}`);
    else {
      r.copies.delivered++;
      r.copies.duplicates += n - 1;
    }
  }
  r.copies.missing = missing.length;
  const crashes = r.kills + r.diedOnItsOwn.length;
  r.copies.duplicateBound = crashes * r.batchSize;
  // Which crash each second copy followed: the last crash before it reached the relay.
  r.copies.duplicatesPerCrash = crashMarks.map(() => 0);
  const firstAt = new Map<string, number>();
  const lostReplies = new Map<{ down: number; up: number }, number>();
  relay.messages.forEach((m, at) => {
    for (const to of m.to) {
      const key = `${m.messageId} ${to}`;
      const first = firstAt.get(key);
      if (first === undefined) {
        firstAt.set(key, at);
        continue;
      }
      // Taken among the last few (one per connection) before the relay went down, or while it went.
      const cut = outages.cutMarks.find((c) => first >= c.down - outages.connections && first < c.up);
      if (cut !== undefined && (lostReplies.get(cut) ?? 0) < outages.connections) {
        lostReplies.set(cut, (lostReplies.get(cut) ?? 0) + 1);
        r.copies.duplicatesAfterLostReply++;
        continue;
      }
      let crash = -1;
      while (crash + 1 < crashMarks.length && crashMarks[crash + 1] <= at) crash++;
      if (crash < 0) r.copies.duplicatesWithoutCrash++;
      else r.copies.duplicatesPerCrash[crash]++;
    }
  });
  const { rows: states } = await pool.query<{ state: string; n: number; last_error: string | null }>(
    `select state, count(*)::int as n, max(last_error) as last_error from outbox group by state order by state`);

  const f = r.failures;
  if (r.acknowledgedButLost.length) f.push(`${r.acknowledgedButLost.length} posts answered 250 were not archived: ${r.acknowledgedButLost.slice(0, 5).join('; ')}`);
  if (missing.length) f.push(`${missing.length} copies never reached the relay (outbox: ${states.map((s) => `${s.state} ${s.n}`).join(', ')}): ${missing.slice(0, 5).join('; ')}`);
  if (r.copies.duplicates - r.copies.duplicatesAfterLostReply > r.copies.duplicateBound) f.push(`${r.copies.duplicates} copies were sent twice, more than one batch (${r.batchSize}) per crash (${crashes} crashes)`);
  const over = r.copies.duplicatesPerCrash.map((n, k) => [k + 1, n]).filter(([, n]) => n > r.batchSize);
  if (over.length) f.push(`more copies sent twice after a crash than one batch (${r.batchSize}): ${over.map(([k, n]) => `${n} after crash ${k}`).join(', ')}`);
  if (r.copies.duplicatesWithoutCrash) f.push(`${r.copies.duplicatesWithoutCrash} copies were sent twice before any crash`);
  if (r.stuck > 0) f.push(`${r.stuck} outbox rows were still in flight or due 30 s after the last restart`);
  for (const d of r.diedOnItsOwn) f.push(`iteration ${d.iteration}: serve died on its own (${d.exit}): ${d.lastProblems.join(' / ') || 'nothing printed'}`);
  for (const s of r.stalls) f.push(`delivery stalled: ${s}`);
  // A 451 while the database is away is the promise kept; a 5xx for a good post to an open list is not.
  const permanent = Object.entries(r.posts.refused).filter(([code]) => !code.startsWith('4'));
  if (permanent.length) f.push(`posts refused with a permanent code: ${permanent.map(([c, n]) => `${c} × ${n}`).join(', ')}`);
}

export function formatReport(r: CrashLoopReport): string {
  const refused = Object.entries(r.posts.refused).map(([c, n]) => `${c} × ${n}`).join(', ') || 'none';
  return [
    `crash loop: seed ${r.seed}, ${r.iterations} iterations, lease ${r.leaseSeconds}${r.leaseSeconds === 'default' ? '' : ' s'}, batch ${r.batchSize}`,
    `  posts sent ${r.posts.sent}, acknowledged ${r.posts.acknowledged}, refused ${refused}, unanswered (cut by a crash) ${r.posts.unanswered} (${r.posts.archivedUnacknowledged} of them archived anyway)`,
    `  acknowledged but lost ${r.acknowledgedButLost.length}`,
    `  copies expected ${r.copies.expected}, delivered ${r.copies.delivered}, missing ${r.copies.missing}, duplicates ${r.copies.duplicates} (bound ${r.copies.duplicateBound}; most after one crash ${Math.max(0, ...r.copies.duplicatesPerCrash)}; replies lost in a relay outage ${r.copies.duplicatesAfterLostReply})`,
    `  kills ${r.kills}, died on its own ${r.diedOnItsOwn.length}, relay outages ${r.faults.relayOutages}, backend terminations ${r.faults.backendTerminations} (${r.faults.backendsEnded} backends), database restarts ${r.faults.dbRestarts}`,
    `  stuck after 30 s ${r.stuck} (nothing in flight or due ${secondsAfter(r.settledAfterMs)}; every copy out ${secondsAfter(r.drainedAfterMs)}), SIGTERM ${r.sigtermMs === null ? 'did not stop it in 10 s' : `stopped it in ${r.sigtermMs} ms`}`,
    ...(r.failures.length ? ['  FAILURES:', ...r.failures.map((f) => `  - ${f}`)] : ['  all checks passed']),
  ].join('\n');
}

function secondsAfter(ms: number | null): string {
  return ms === null ? 'not within the wait' : `${(ms / 1000).toFixed(1)} s after the last restart`;
}
