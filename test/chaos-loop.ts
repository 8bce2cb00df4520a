import path from 'node:path';
import pg from 'pg';
import { createList } from '../src/db/lists.ts';
import { migrate } from '../src/db/migrate.ts';
import { restartEmbedded, terminateBackends } from './helpers/db-faults.ts';
import { startFaultRelay, type FaultRelay } from './helpers/fault-relay.ts';
import { random, type Random } from './helpers/random.ts';
import { problemLines, spawnServe, type ServeProcess } from './helpers/serve-process.ts';
import { ConnectionLost, SmtpSession } from './helpers/smtp-session.ts';

/**
 * The crash loop (issue 10): the real `listkeeper serve --smtp --worker` takes concurrent posts
 * to lists with members and delivers them to a relay that lives in this process, and is killed
 * with SIGKILL at a random moment, again and again. Optional faults join some iterations: the
 * relay goes down and comes back, the server's PostgreSQL backends are terminated, the embedded
 * PostgreSQL restarts. At the end it checks what the design promises:
 *
 * - every post answered 250 is archived, in every list it was sent to;
 * - every (post, member) copy reached the relay;
 * - copies sent twice are at most one batch (DELIVERY_BATCH_SIZE) per crash;
 * - 30 s after the last restart nothing is in flight or due and unsent;
 * - serve never dies on its own, delivery moves again after a relay outage, and SIGTERM stops
 *   it within 10 s.
 */
export type Fault = 'relay-outage' | 'backend-termination' | 'db-restart';

export interface CrashLoopOptions {
  /** a database of its own (migrated here if it is not) */
  databaseUrl: string;
  /** a connection to the same server with the right to terminate backends */
  adminUrl: string;
  iterations: number;
  seed: number;
  /** DELIVERY_LEASE_SECONDS for serve; undefined keeps its default */
  leaseSeconds?: number;
  batchSize?: number;
  faults?: Fault[];
  /** the embedded cluster's folder (DATA_DIR/postgres): needed for 'db-restart' */
  clusterDir?: string;
  /** concurrent SMTP sessions posting during each iteration */
  sessions?: number;
  /** members of the two lists */
  members?: [number, number];
  /** posts per iteration at most: the sessions then wait, connected, for the kill */
  postsPerIteration?: number;
  /** the kill comes this long after the posts start, at random in [min, max] ms */
  killWindowMs?: [number, number];
  /** nothing may be in flight or due this long after the last restart */
  settleMs?: number;
  /** serve's output goes here, one file per start */
  logDir?: string;
  print?: (line: string) => void;
}

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
    /** copies sent twice before any crash: there should be none */
    duplicatesWithoutCrash: number;
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

const DOMAIN = 'lists.example.org';
const LISTS = [`chaos-a@${DOMAIN}`, `chaos-b@${DOMAIN}`];

interface PostRecord {
  id: string;
  /** the lists named at RCPT TO; once answered, the ones whose RCPT was answered 250 */
  lists: string[];
  outcome: 'acked' | 'refused' | 'unanswered';
  code?: number;
  /** RCPT TO refusals (a 451 while the database is away) */
  rcptRefused: number[];
}

export async function runCrashLoop(o: CrashLoopOptions): Promise<CrashLoopReport> {
  const print = o.print ?? (() => undefined);
  const rnd = random(o.seed);
  const batchSize = o.batchSize ?? 20;
  const faults = new Set(o.faults ?? []);
  if (faults.has('db-restart') && !o.clusterDir) throw new Error('db-restart needs the embedded cluster folder (clusterDir)');
  const pool = new pg.Pool({ connectionString: o.databaseUrl, max: 3 });
  pool.on('error', () => undefined); // a db-restart breaks idle clients too
  const relay = await startFaultRelay();
  // Each copy takes a few milliseconds, so a kill finds a batch in the middle of going out.
  relay.fail('dot', { delayMs: 2 });
  const posts: PostRecord[] = [];
  /** how many messages the relay had at each crash: a copy sent twice is put down to the crash before it */
  const crashMarks: number[] = [];
  const report: CrashLoopReport = {
    seed: o.seed, iterations: o.iterations, leaseSeconds: o.leaseSeconds ?? 'default', batchSize,
    posts: { sent: 0, acknowledged: 0, refused: {}, unanswered: 0, archivedUnacknowledged: 0 },
    acknowledgedButLost: [],
    copies: { expected: 0, delivered: 0, missing: 0, duplicates: 0, duplicateBound: 0, duplicatesPerCrash: [], duplicatesWithoutCrash: 0 },
    kills: 0, diedOnItsOwn: [],
    faults: { relayOutages: 0, backendTerminations: 0, backendsEnded: 0, dbRestarts: 0 },
    stalls: [], stuck: 0, settledAfterMs: null, drainedAfterMs: null, sigtermMs: null, failures: [],
  };
  let serve: ServeProcess | null = null;
  let starts = 0;
  const env: Record<string, string> = {
    DATABASE_URL: o.databaseUrl,
    RELAY_URL: relay.url,
    MAIL_DOMAIN: DOMAIN,
    DELIVERY_BATCH_SIZE: String(batchSize),
    DELIVERY_CONNECTIONS: '4',
    DELIVERY_POLL_MS: '500',
    DB_POOL_SIZE: '10',
    LOG_LEVEL: 'info',
    ...(o.leaseSeconds ? { DELIVERY_LEASE_SECONDS: String(o.leaseSeconds) } : {}),
  };
  const start = async () => {
    starts++;
    return spawnServe({ roles: ['smtp', 'worker'], env, logFile: o.logDir ? path.join(o.logDir, `serve-${starts}.log`) : undefined });
  };

  try {
    await migrate(pool);
    await setUpLists(pool, o.members ?? [16, 8]);
    for (let i = 1; i <= o.iterations; i++) {
      serve ??= await start();
      const plan = planIteration(rnd, i, o, faults);
      const load = startLoad(serve.smtpPort!, rnd.fork(), o.sessions ?? 3, o.postsPerIteration ?? 60, posts, o.seed, i);
      const t0 = Date.now();
      const events: string[] = [];
      const at = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, t0 + ms - Date.now())));
      const tasks: Promise<void>[] = [];
      if (plan.outage) {
        tasks.push((async () => {
          await at(plan.outage!.at);
          await relay.down();
          report.faults.relayOutages++;
          await at(plan.outage!.at + plan.outage!.ms);
          await relay.up();
          // Delivery must move again once the relay is back, while posts keep coming.
          const seen = relay.messages.length;
          const deadline = Date.now() + 15_000;
          while (relay.messages.length === seen && Date.now() < deadline && serve!.alive()) await sleep(100);
          if (relay.messages.length === seen && serve!.alive()) {
            const { rows } = await pool.query<{ state: string; attempts: number; n: number }>(
              `select state, attempts, count(*)::int as n from outbox where state in ('queued', 'sending') group by 1, 2 order by 1, 2`);
            const logged = problemLines(serve!.output()).length;
            report.stalls.push(`iteration ${i}: no copy reached the relay in the 15 s after it came back from a ${plan.outage!.ms} ms outage; ` +
              `outbox ${rows.map((r) => `${r.state} (attempts ${r.attempts}) ${r.n}`).join(', ')}; ${logged} warnings or errors logged`);
          }
          events.push(`relay down ${plan.outage!.ms} ms`);
        })());
      }
      if (plan.terminateAt !== null) {
        tasks.push((async () => {
          await at(plan.terminateAt!);
          // Three rounds, 150 ms apart: the reconnected clients are cut again mid-work.
          for (let k = 0; k < 3 && serve!.alive(); k++) {
            report.faults.backendTerminations++;
            report.faults.backendsEnded += await terminateBackends(o.adminUrl, serve!.pid);
            await sleep(150);
          }
          events.push('backends terminated');
        })());
      }
      if (plan.restartAt !== null) {
        tasks.push((async () => {
          await at(plan.restartAt!);
          report.faults.dbRestarts++;
          await restartEmbedded(o.clusterDir!, 500);
          events.push('database restarted');
        })());
      }
      // The kill comes at its moment, but never before the faults of the iteration have played out.
      await at(plan.killAt);
      await Promise.all(tasks);
      if (serve.alive()) {
        await serve.kill('SIGKILL');
        report.kills++;
      } else {
        const exit = await serve.exited;
        report.diedOnItsOwn.push({ iteration: i, exit: exit.signal ?? `code ${exit.code}`, lastProblems: lastWords(serve.output()) });
        events.push('serve had died on its own');
      }
      crashMarks.push(relay.messages.length);
      serve = null;
      await load.stop();
      print(`iteration ${i}/${o.iterations}: kill after ${Date.now() - t0} ms${events.length ? ` (${events.join(', ')})` : ''}; posts so far ${posts.length}, copies at the relay ${relay.messages.length}`);
    }

    // The last restart: the queue must settle within settleMs, and then every copy arrive.
    serve = await start();
    const restarted = Date.now();
    const settleMs = o.settleMs ?? 30_000;
    for (;;) {
      const busy = await inFlightOrDue(pool);
      if (busy === 0) {
        report.settledAfterMs = Date.now() - restarted;
        break;
      }
      if (Date.now() - restarted > settleMs) {
        report.stuck = busy;
        break;
      }
      await sleep(250);
    }
    const leaseMs = (o.leaseSeconds ?? 60) * 1000;
    const completeBy = restarted + settleMs + 2 * leaseMs + 30_000;
    while ((await unsent(pool)) > 0 && Date.now() < completeBy) await sleep(500);
    if ((await unsent(pool)) === 0) report.drainedAfterMs = Date.now() - restarted;
    await sleep(300); // the last replies of the relay

    await account(pool, relay, posts, crashMarks, report);
    if (serve.alive()) {
      const t = Date.now();
      serve.child.kill('SIGTERM');
      const stopped = await Promise.race([serve.exited.then(() => true), sleep(10_000).then(() => false)]);
      report.sigtermMs = stopped ? Date.now() - t : null;
      if (!stopped) report.failures.push('SIGTERM did not stop serve within 10 s');
    } else {
      report.failures.push('serve died on its own after the last restart');
    }
  } finally {
    if (serve?.alive()) await serve.kill('SIGKILL');
    await relay.stop();
    await pool.end();
  }
  return report;
}

/** Why a process died: the crash it printed (not JSON), else its last logged problems. */
function lastWords(output: string): string[] {
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

interface Plan {
  killAt: number;
  outage: { at: number; ms: number } | null;
  terminateAt: number | null;
  restartAt: number | null;
}

/** Each fault joins an iteration with even odds, and each one is sure to join one early on. */
function planIteration(rnd: Random, i: number, o: CrashLoopOptions, faults: Set<Fault>): Plan {
  const [min, max] = o.killWindowMs ?? [400, 2500];
  const killAt = rnd.int(min, max);
  const order: Fault[] = ['relay-outage', 'backend-termination', 'db-restart'];
  const joins = (f: Fault) => faults.has(f) && (rnd.next() < 0.5 || i === order.filter((x) => faults.has(x)).indexOf(f) + 1);
  const outage = joins('relay-outage') ? { at: rnd.int(0, Math.floor(killAt / 2)), ms: rnd.int(300, 1500) } : null;
  // Late enough that posts are flowing (the first one takes a few hundred ms after a start).
  const terminateAt = joins('backend-termination') ? rnd.int(Math.min(600, killAt), Math.max(600, killAt - 300)) : null;
  const restartAt = joins('db-restart') ? rnd.int(100, killAt) : null;
  return { killAt, outage, terminateAt, restartAt };
}

async function setUpLists(pool: pg.Pool, members: [number, number]) {
  for (const [k, address] of LISTS.entries()) {
    const exists = await pool.query('select 1 from lists where address = $1', [address]);
    if (exists.rowCount) continue;
    const list = await createList(pool, { address, name: address.split('@')[0], description: 'crash loop', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
    // Members on a few domains each, and no one on both lists: one copy per (post, list, member).
    await pool.query(
      `insert into members (list_id, email, mode) select $1, $2 || g || '@d' || (g % 4) || '.example', 'each' from generate_series(1, $3::int) g`,
      [list.id, `m${k}-`, members[k]],
    );
  }
}

/**
 * Concurrent SMTP sessions posting until stopped or cut off by the kill: to one list, the other,
 * or both (one message, two recipients); a third are replies to earlier posts, some MIME with an
 * attachment. Every post is recorded with what the server answered.
 */
function startLoad(port: number, rnd: Random, sessions: number, cap: number, posts: PostRecord[], seed: number, iteration: number) {
  let stopping = false;
  let n = 0;
  const client = async (c: number) => {
    let session: SmtpSession;
    try {
      session = await SmtpSession.open(port, { timeoutMs: 20_000 });
    } catch {
      return;
    }
    while (!stopping) {
      if (n >= cap) {
        // Enough for this iteration (a delayed kill must not pile up a backlog): stay connected.
        await sleep(100);
        continue;
      }
      const lists = pick(rnd, [[LISTS[0]], [LISTS[1]], LISTS, [LISTS[0]]]);
      const id = `chaos-${seed}-${iteration}-${c}-${n++}@senders.example`;
      const acked = posts.filter((p) => p.outcome === 'acked');
      const parent = acked.length && rnd.next() < 0.33 ? acked[rnd.int(0, acked.length - 1)].id : null;
      const record: PostRecord = { id, lists, outcome: 'unanswered', rcptRefused: [] };
      posts.push(record);
      try {
        const t = await session.send(`p${c}@senders.example`, lists, composePost(rnd, id, lists, parent));
        record.code = t.final.code;
        record.outcome = t.stage === 'dot' && t.final.code === 250 ? 'acked' : 'refused';
        // The 250 after DATA speaks for the recipients whose RCPT TO was answered 250, no others.
        record.rcptRefused = t.rcpt.filter((r) => r.code !== 250).map((r) => r.code);
        record.lists = lists.filter((_, k) => t.rcpt[k]?.code === 250);
      } catch (err) {
        if (!(err instanceof ConnectionLost)) throw err;
        return;
      }
      await sleep(rnd.int(20, 120));
    }
    await session.quit();
  };
  const running = Promise.all(Array.from({ length: sessions }, (_, c) => client(c)));
  return {
    async stop() {
      stopping = true;
      await running;
    },
  };
}

const WORDS = ['postgres', 'vacuum', 'index', 'replica', 'commit', 'lock', 'queue', 'thread', 'archive', 'patch', 'review', 'crash', 'restart', 'latency'];

function composePost(rnd: Random, id: string, lists: string[], parent: string | null): Buffer {
  const words = Array.from({ length: rnd.int(20, 200) }, () => pick(rnd, WORDS));
  const body = words.join(' ').replace(/(([a-z]+ ){12})/g, '$1\r\n');
  const head = [
    `From: Poster <${id.split('@')[0].replace(/^chaos-/, 'p-')}@senders.example>`,
    `To: ${lists.join(', ')}`,
    `Subject: ${parent ? 'Re: ' : ''}${pick(rnd, WORDS)} ${pick(rnd, WORDS)}`,
    `Date: ${new Date().toUTCString().replace('GMT', '+0000')}`,
    `Message-ID: <${id}>`,
    ...(parent ? [`In-Reply-To: <${parent}>`, `References: <${parent}>`] : []),
    'MIME-Version: 1.0',
  ];
  if (rnd.next() < 0.2) {
    const b = `b-${rnd.int(0, 1e9)}`;
    return Buffer.from([...head, `Content-Type: multipart/mixed; boundary="${b}"`, '', `--${b}`, 'Content-Type: text/plain; charset=utf-8', '', body, `--${b}`,
      'Content-Type: application/octet-stream; name="data.bin"', 'Content-Transfer-Encoding: base64', 'Content-Disposition: attachment; filename="data.bin"', '',
      Buffer.from(words.join('')).toString('base64').replace(/.{76}/g, '$&\r\n'), `--${b}--`, ''].join('\r\n'));
  }
  return Buffer.from([...head, 'Content-Type: text/plain; charset=utf-8', '', body, ''].join('\r\n'));
}

/** Rows in flight, or due and unsent, for more than a few seconds: what a live worker would have taken. */
async function inFlightOrDue(pool: pg.Pool): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(
    `select count(*)::int as n from outbox
      where (state = 'sending' and locked_at < now() - interval '5 seconds')
         or (state = 'queued' and run_at < now() - interval '5 seconds')`);
  return rows[0].n;
}

async function unsent(pool: pg.Pool): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(`select count(*)::int as n from outbox where state in ('queued', 'sending')`);
  return rows[0].n;
}

/** Compares what was acknowledged, archived, queued and delivered; fills the report's figures. */
async function account(pool: pg.Pool, relay: FaultRelay, posts: PostRecord[], crashMarks: number[], r: CrashLoopReport) {
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
  const seen = new Set<string>();
  relay.messages.forEach((m, at) => {
    for (const to of m.to) {
      const key = `${m.messageId} ${to}`;
      if (!seen.has(key)) {
        seen.add(key);
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
  if (r.copies.duplicates > r.copies.duplicateBound) f.push(`${r.copies.duplicates} copies were sent twice, more than one batch (${r.batchSize}) per crash (${crashes} crashes)`);
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
    `  copies expected ${r.copies.expected}, delivered ${r.copies.delivered}, missing ${r.copies.missing}, duplicates ${r.copies.duplicates} (bound ${r.copies.duplicateBound}; most after one crash ${Math.max(0, ...r.copies.duplicatesPerCrash)})`,
    `  kills ${r.kills}, died on its own ${r.diedOnItsOwn.length}, relay outages ${r.faults.relayOutages}, backend terminations ${r.faults.backendTerminations} (${r.faults.backendsEnded} backends), database restarts ${r.faults.dbRestarts}`,
    `  stuck after 30 s ${r.stuck} (nothing in flight or due ${secondsAfter(r.settledAfterMs)}; every copy out ${secondsAfter(r.drainedAfterMs)}), SIGTERM ${r.sigtermMs === null ? 'did not stop it in 10 s' : `stopped it in ${r.sigtermMs} ms`}`,
    ...(r.failures.length ? ['  FAILURES:', ...r.failures.map((f) => `  - ${f}`)] : ['  all checks passed']),
  ].join('\n');
}

function secondsAfter(ms: number | null): string {
  return ms === null ? 'not within the wait' : `${(ms / 1000).toFixed(1)} s after the last restart`;
}

function pick<T>(rnd: Random, items: T[]): T {
  return items[rnd.int(0, items.length - 1)];
}

function sleep(ms: number) {
  return new Promise((r) => setTimeout(r, ms));
}
