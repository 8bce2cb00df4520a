/*
 * METRICS_PORT: /metrics and /healthz on a listener of their own, in a real `serve`.
 *
 * - a delivery worker alone (no web role) can be scraped, with the queue read from the database;
 * - with the web role and several web processes, the listener gives every process's counters
 *   added up, and the public port no longer answers /metrics;
 * - the listener answers nothing else.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { spawnServe, type ServeProcess } from './helpers/serve-process.ts';

let db: TestDatabase;
const running: ServeProcess[] = [];

beforeAll(async () => {
  db = await testDatabase();
});

afterAll(async () => {
  for (const s of running) await s.kill('SIGTERM');
  await db?.drop();
});

async function serveWithMetrics(roles: ('smtp' | 'web' | 'worker')[], env: Record<string, string> = {}): Promise<{ serve: ServeProcess; metricsUrl: string }> {
  const serve = await spawnServe({ roles, env: { DATABASE_URL: db.url, METRICS_PORT: '0', ...env } });
  running.push(serve);
  const line = /^ {2}metrics (http:\/\/\S+)\/metrics$/m.exec(serve.output());
  expect(line, serve.output()).not.toBeNull();
  return { serve, metricsUrl: line![1] };
}

/** A sample's value from Prometheus text, or null when the line is not there. */
function sample(text: string, name: string): number | null {
  const m = new RegExp(`^${name.replace(/[{}"=]/g, '\\$&')} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : null;
}

describe('METRICS_PORT', () => {
  it('lets a delivery worker alone be scraped, the queue read from the database, and answers nothing else', async () => {
    const { metricsUrl } = await serveWithMetrics(['worker']);
    const res = await fetch(`${metricsUrl}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    expect(text).toMatch(/^# TYPE listkeeper_deliveries_total counter$/m);
    expect(sample(text, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);
    const { rows } = await db.pool.query<{ n: number }>(`select count(*)::int as n from outbox where state = 'queued'`);
    expect(sample(text, 'listkeeper_outbox_rows{state="queued"}')).toBe(rows[0].n);

    const health = await fetch(`${metricsUrl}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok', database: 'ok' });
    const other = await fetch(`${metricsUrl}/admin/`);
    expect(other.status).toBe(404);
    expect(await other.text()).toMatch(/serves \/metrics and \/healthz/);
    const post = await fetch(`${metricsUrl}/metrics`, { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    // Stopped now: a worker goes on with background jobs (conversions) on this database, and a
    // change they make to the archive would empty the next test's page caches under it.
    await running.pop()!.kill('SIGTERM');
  });

  it('adds up the web processes\' counters, and takes /metrics off the public port', async () => {
    const { serve, metricsUrl } = await serveWithMetrics(['web'], { WEB_PROCESSES: '2', PAGE_CACHE_MB: '8' });
    const counts = async () => {
      const text = await (await fetch(`${metricsUrl}/metrics`)).text();
      return { hit: sample(text, 'listkeeper_page_cache_requests_total{result="hit"}') ?? 0, miss: sample(text, 'listkeeper_page_cache_requests_total{result="miss"}') ?? 0 };
    };
    const before = await counts();
    // New connections each time: the primary hands them out in turn, so both processes take some.
    for (let i = 0; i < 12; i++) expect((await fetch(`${serve.webUrl}/`, { headers: { connection: 'close' } })).status).toBe(200);
    const after = await counts();
    expect(after.hit + after.miss - before.hit - before.miss).toBe(12);
    // Each process's cache is its own: one miss in each, which only the sum of both shows.
    expect(after.miss - before.miss).toBe(2);

    const pub = await fetch(`${serve.webUrl}/metrics`);
    expect(pub.status).toBe(404);
    expect(await pub.text()).not.toMatch(/listkeeper_/);
    expect((await fetch(`${serve.webUrl}/healthz`)).status).toBe(200);
  });
});
