/*
 * The crash loop: the real `listkeeper serve --smtp --worker` takes concurrent posts
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

import path from 'node:path';
import pg from 'pg';
import { createList } from '../src/db/lists.ts';
import { migrate } from '../src/db/migrate.ts';
import { restartEmbedded, terminateBackends } from './helpers/db-faults.ts';
import { DOMAIN, LISTS, startLoad, type PostRecord } from './chaos-load.ts';
import { account, lastWords, type CrashLoopReport } from './chaos-report.ts';
import { startFaultRelay } from './helpers/fault-relay.ts';
import { random, type Random } from './helpers/random.ts';
import { problemLines, spawnServe, type ServeProcess } from './helpers/serve-process.ts';

export { formatReport, type CrashLoopReport } from './chaos-report.ts';

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
  // When the relay went down and came back: copies it took just before, or while its sockets were
  // being destroyed, may never have had their 250 read.
  const cutMarks: { down: number; up: number }[] = [];
  const report: CrashLoopReport = {
    seed: o.seed, iterations: o.iterations, leaseSeconds: o.leaseSeconds ?? 'default', batchSize,
    posts: { sent: 0, acknowledged: 0, refused: {}, unanswered: 0, archivedUnacknowledged: 0 },
    acknowledgedButLost: [],
    copies: { expected: 0, delivered: 0, missing: 0, duplicates: 0, duplicateBound: 0, duplicatesPerCrash: [], duplicatesWithoutCrash: 0, duplicatesAfterLostReply: 0 },
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
          const cut = { down: relay.messages.length, up: Number.MAX_SAFE_INTEGER };
          cutMarks.push(cut);
          await relay.down();
          report.faults.relayOutages++;
          await at(plan.outage!.at + plan.outage!.ms);
          cut.up = relay.messages.length;
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
      // A fault can fail on its own (terminating backends while the database restarts): that is
      // noted, it must not bring the harness down before the kill.
      const settled = Promise.allSettled(tasks);
      await at(plan.killAt);
      for (const r of await settled) if (r.status === 'rejected') events.push(`a fault could not be injected: ${(r.reason as Error).message}`);
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

    await account(pool, relay, posts, crashMarks, report, { cutMarks, connections: Number(env.DELIVERY_CONNECTIONS) });
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

function sleep(ms: number) {
  return new Promise((r) => setTimeout(r, ms));
}
