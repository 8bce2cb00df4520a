/*
 * The log of a `serve` (ingest, web and worker) whose database goes away: every loop (the worker's
 * lock, heartbeat, chores and conversions, the LISTEN connections, health checks, web requests,
 * recipient lookups) used to log an error per try, thousands an hour for an outage of an hour. A
 * repeated failure now logs once when it starts, a summary every LOG_REPEAT_SECONDS at most, and
 * once when it recovers (src/repeated-failures.ts). The outage is real: a proxy in front of
 * PostgreSQL cuts every connection and refuses new ones for a few seconds.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createList } from '../src/db/lists.ts';
import { refusingProxy } from './helpers/db-faults.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { spawnServe, type ServeProcess } from './helpers/serve-process.ts';
import { sendRaw, message } from './helpers/smtp.ts';
import { until } from './helpers/worker-process.ts';

let db: TestDatabase;
let proxy: Awaited<ReturnType<typeof refusingProxy>>;
let serve: ServeProcess | undefined;

const SUMMARY_SECONDS = 2;
const OUTAGE_MS = 8_000;

beforeAll(async () => {
  db = await testDatabase();
  await createList(db.pool, { address: 'dev@lists.example.org', name: 'dev', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: ['owner@example.org'] });
  proxy = await refusingProxy(db.url);
});

afterAll(async () => {
  await serve?.kill('SIGKILL');
  await proxy?.close();
  await db?.drop();
});

interface Line {
  level: number;
  msg: string;
  chore?: string;
  task?: string;
  check?: string;
  channels?: string[];
}

function linesOf(text: string): Line[] {
  return text.split('\n').filter((l) => l.startsWith('{')).flatMap((l) => {
    try {
      return [JSON.parse(l) as Line];
    } catch {
      return [];
    }
  });
}

/** What failed, whichever line of its course this is: its start, a summary, its end. */
const failureOf = (l: Line) => `${l.msg.replace(/: (still failing|recovered|no more for [\d.]+ s)$/, '')}${l.chore ? ` [${l.chore}]` : ''}${l.task ? ` [${l.task}]` : ''}${l.check ? ` [${l.check}]` : ''}${l.channels ? ` [${l.channels.join()}]` : ''}`;

/** Traffic while the test runs: a page, a health check, and a post, several times a second. */
function traffic(s: ServeProcess): () => void {
  const timer = setInterval(() => {
    void fetch(`${s.webUrl}/`).then((r) => r.arrayBuffer(), () => undefined);
    void fetch(`${s.webUrl}/healthz`).then((r) => r.arrayBuffer(), () => undefined);
    void sendRaw(s.smtpPort!, { from: 'ann@example.net', to: ['dev@lists.example.org'] }, message({ from: 'ann@example.net', to: 'dev@lists.example.org' }));
  }, 200);
  return () => clearInterval(timer);
}

describe('a serve whose database is away', () => {
  it('logs each repeated failure once, then a summary per interval, and its recovery', async () => {
    serve = await spawnServe({
      roles: ['smtp', 'web', 'worker'],
      env: { DATABASE_URL: proxy.url, DELIVERY_POLL_MS: '100', DELIVERY_LEASE_SECONDS: '3', LOG_REPEAT_SECONDS: String(SUMMARY_SECONDS) },
    });
    const stop = traffic(serve);
    try {
      await new Promise((r) => setTimeout(r, 1_500));
      const before = serve.output().length;
      await proxy.down();
      await new Promise((r) => setTimeout(r, OUTAGE_MS));
      const during = linesOf(serve.output().slice(before));
      await proxy.up();

      // Every loop failed (each chore, the web, the ingest, the health check, the lock, LISTEN)...
      const problems = during.filter((l) => l.level >= 40);
      const byFailure = new Map<string, number>();
      for (const l of problems) byFailure.set(failureOf(l), (byFailure.get(failureOf(l)) ?? 0) + 1);
      for (const failed of ['delivery maintenance chore failed [held notices]', 'web request failed on a database fault: answered 503', 'health check failed', 'recipient lookup failed', 'could not take the delivery worker lock; trying again']) {
        expect(byFailure.get(failed), `${failed} in ${JSON.stringify([...byFailure])}`).toBeGreaterThan(0);
      }
      // ...and said so when it started and at most once per interval after (one more for a new
      // kind of error, such as the connection cut and then refused).
      const most = 2 + Math.ceil(OUTAGE_MS / 1000 / SUMMARY_SECONDS) + 1;
      for (const [failed, n] of byFailure) expect(n, `${failed}: ${n} lines in ${OUTAGE_MS / 1000} s`).toBeLessThanOrEqual(most);

      // Back: each says it has recovered.
      const after = serve.output().length;
      const recovered = (failed: string) => linesOf(serve!.output().slice(after)).filter((l) => /: recovered$/.test(l.msg) && failureOf(l) === failed);
      for (const failed of ['delivery maintenance chore failed [held notices]', 'health check failed', 'recipient lookup failed', 'could not take the delivery worker lock; trying again']) {
        await until(() => recovered(failed).length > 0, `"${failed}: recovered"`, 20_000);
      }
      // The web's failures end after an interval without one.
      await until(() => linesOf(serve!.output().slice(after)).some((l) => l.msg === `web request failed on a database fault: answered 503: no more for ${SUMMARY_SECONDS} s`), 'the end of the web\'s failures', 20_000);
    } finally {
      stop();
    }
    // And works again: a post is taken in.
    const sent = await sendRaw(serve.smtpPort!, { from: 'ann@example.net', to: ['dev@lists.example.org'] }, message({ from: 'ann@example.net', to: 'dev@lists.example.org' }));
    expect(sent.ok, sent.response).toBe(true);
  });
});
