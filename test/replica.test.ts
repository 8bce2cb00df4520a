/*
 * A real streaming replica (issue 14, item 4): a private primary of the machine's PostgreSQL and a
 * standby made with `pg_basebackup -R`, listkeeper given DATABASE_URL (primary) and
 * DATABASE_READ_URL (standby). Replay on the standby is paused to tell who answered: what the
 * standby has not replayed, only the primary can show.
 *
 * - archive pages and search read from the standby;
 * - a browser that has just written (a POST) reads from the primary (read-your-writes);
 * - with the standby gone, reads fall back to the primary, logged and counted, and go back to
 *   the standby when it returns.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, startServe, type RunningServe } from './helpers/cli.ts';
import { jumpingClock, skewedClock } from './helpers/skewed-clock.ts';
import { primaryWithStandby, type PrivatePostgres } from './helpers/private-postgres.ts';
import { message, sendRaw } from './helpers/smtp.ts';

let servers: Awaited<ReturnType<typeof primaryWithStandby>> | undefined;
let primary: PrivatePostgres;
let standby: PrivatePostgres;
let serve: RunningServe | undefined;
const LIST = 'dev@lists.example.org';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const on = <T>(server: PrivatePostgres, sql: string, database = 'lk') => server.query<T>(sql, database);

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(100);
  }
}

/** The standby has replayed everything the primary has written so far. */
async function caughtUp() {
  const [{ lsn }] = await on<{ lsn: string }>(primary, 'select pg_current_wal_lsn()::text as lsn', 'postgres');
  await until('the standby replays to ' + lsn, async () => {
    const [{ ok }] = await on<{ ok: boolean }>(standby, `select pg_last_wal_replay_lsn() >= '${lsn}'::pg_lsn as ok`, 'postgres');
    return ok;
  });
}

async function post(id: string, subject: string) {
  const r = await sendRaw(serve!.smtpPort, { from: 'alice@example.org', to: [LIST] }, message({ id, to: LIST, subject }));
  expect(r.ok).toBe(true);
}

const page = async (p: string, cookie?: string) => {
  const res = await fetch(`${serve!.webUrl}${p}`, { headers: cookie ? { cookie } : {}, redirect: 'manual' });
  return { status: res.status, html: await res.text(), cookies: res.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ') };
};

async function fallbacks(reason: string): Promise<number> {
  const text = await (await fetch(`${serve!.webUrl}/metrics`)).text();
  const m = new RegExp(`listkeeper_read_fallbacks_total\\{reason="${reason}"\\} (\\d+)`).exec(text);
  return m ? Number(m[1]) : 0;
}

beforeAll(async () => {
  servers = await primaryWithStandby('lk-replica-');
  ({ primary, standby } = servers);
  const env = { DATABASE_URL: primary.url('lk'), MAIL_DOMAIN: 'lists.example.org' };
  expect((await cli(['migrate'], env)).code).toBe(0);
  expect((await cli(['list', 'create', LIST, '--name', 'Developers', '--post-policy', 'open'], env)).code).toBe(0);
  await caughtUp();
  // The lag bound is far enough off that these tests' paused standby stays in use (see the last test).
  serve = await startServe({ ...env, DATABASE_READ_URL: standby.url('lk'), DATABASE_READ_MAX_LAG: '60', WEB_PROCESSES: '1' }, ['--smtp', '--web', '--worker']);
}, 120_000);

afterAll(async () => {
  serve?.child.kill('SIGKILL');
  servers?.remove();
});

describe('a streaming replica for archive reads', () => {
  it('serves archive pages and search from the standby', async () => {
    await on(standby, 'select pg_wal_replay_pause()', 'postgres');
    try {
      await post('unreplayed@example.org', 'Only the primary has this yet');
      // The primary has it; the standby, paused, does not, and the anonymous reader asks the standby.
      expect((await on<{ n: number }>(primary, "select count(*)::int as n from messages where message_id = 'unreplayed@example.org'"))[0].n).toBe(1);
      expect((await page('/message-id/unreplayed@example.org')).status).toBe(404);
      expect((await page('/search?q=primary')).html).not.toContain('Only the primary has this yet');
    } finally {
      await on(standby, 'select pg_wal_replay_resume()', 'postgres');
    }
    await caughtUp();
    expect((await page('/message-id/unreplayed@example.org')).html).toContain('Only the primary has this yet');
    expect((await page('/search?q=primary')).html).toContain('1 message found');
  });

  it('reads from the primary for a browser that has just written', async () => {
    await on(standby, 'select pg_wal_replay_pause()', 'postgres');
    try {
      await post('just-written@example.org', 'Fresh off the press');
      // A POST (here the subscribe form, which any visitor may send) sets the cookie.
      const form = await page(`/lists/dev/subscribe`);
      const csrf = /name="_csrf" value="([^"]+)"/.exec(form.html)?.[1];
      const formCookie = form.cookies;
      const res = await fetch(`${serve!.webUrl}/lists/dev/subscribe`, {
        method: 'POST', redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: formCookie },
        body: new URLSearchParams({ email: 'reader@example.org', ...(csrf ? { _csrf: csrf } : {}) }).toString(),
      });
      const fresh = res.headers.getSetCookie().find((c) => c.startsWith('lk_fresh='));
      expect(fresh).toMatch(/Max-Age=10/);
      const before = await fallbacks('fresh');
      const seen = await page('/message-id/just-written@example.org', fresh!.split(';')[0]);
      expect(seen.status).toBe(200);
      expect(seen.html).toContain('Fresh off the press');
      expect(await fallbacks('fresh')).toBeGreaterThan(before);
      // Anyone else still reads the standby, which has not replayed it.
      expect((await page('/message-id/just-written@example.org')).status).toBe(404);
      // A cookie that claims more than the fresh window is not believed.
      expect((await page('/message-id/just-written@example.org', `lk_fresh=${Date.now() + 3_600_000}`)).status).toBe(404);
    } finally {
      await on(standby, 'select pg_wal_replay_resume()', 'postgres');
    }
  });

  it('reads from the primary for a browser that has just written through another web process whose clock is off', async () => {
    // The cookie holds a time the other process compares: the database's, not either machine's.
    const skewed = await Promise.all(['+5m', '-5m'].map((offset) => startServe({ DATABASE_URL: primary.url('lk'), MAIL_DOMAIN: 'lists.example.org', DATABASE_READ_URL: standby.url('lk'), DATABASE_READ_MAX_LAG: '60', WEB_PROCESSES: '1', ...skewedClock(offset) })));
    await on(standby, 'select pg_wal_replay_pause()', 'postgres');
    try {
      await post('written-elsewhere@example.org', 'Written through one process');
      for (const [writer, reader] of [[serve!, skewed[0]], [skewed[0], serve!], [skewed[1], skewed[0]]]) {
        const form = await fetch(`${writer.webUrl}/lists/dev/subscribe`);
        const html = await form.text();
        const csrf = /name="_csrf" value="([^"]+)"/.exec(html)?.[1];
        const res = await fetch(`${writer.webUrl}/lists/dev/subscribe`, {
          method: 'POST', redirect: 'manual',
          headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: form.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ') },
          body: new URLSearchParams({ email: 'reader@example.org', ...(csrf ? { _csrf: csrf } : {}) }).toString(),
        });
        const fresh = res.headers.getSetCookie().find((c) => c.startsWith('lk_fresh='))!.split(';')[0];
        const seen = await fetch(`${reader.webUrl}/message-id/written-elsewhere@example.org`, { headers: { cookie: fresh } });
        expect(seen.status).toBe(200);
        expect(await seen.text()).toContain('Written through one process');
      }
    } finally {
      await on(standby, 'select pg_wal_replay_resume()', 'postgres');
      for (const s of skewed) s.child.kill('SIGKILL');
    }
  });

  it('falls back to the primary while the standby is down, says so, and goes back to it', async () => {
    await caughtUp();
    standby.stop('immediate');
    const before = await fallbacks('unreachable');
    for (const p of ['/message-id/unreplayed@example.org', '/search?q=primary', '/lists/dev/']) {
      const r = await page(p);
      expect(r.status, p).toBe(200);
    }
    expect((await page('/message-id/unreplayed@example.org')).html).toContain('Only the primary has this yet');
    expect(await fallbacks('unreachable')).toBeGreaterThan(before);
    expect(serve!.output()).toContain('read replica unreachable: reading from the primary');

    standby.start();
    // Once it is back (the retry interval is 5 s), a paused standby shows reads go to it again.
    await caughtUp();
    await on(standby, 'select pg_wal_replay_pause()', 'postgres');
    try {
      await post('after-return@example.org', 'Written while the standby was paused again');
      await until('reads go back to the standby', async () => (await page('/message-id/after-return@example.org')).status === 404, 20_000);
      expect(serve!.output()).toContain('read replica reachable again');
    } finally {
      await on(standby, 'select pg_wal_replay_resume()', 'postgres');
    }
  }, 60_000);

  it('reads from the primary while the standby lags more than DATABASE_READ_MAX_LAG, and from the standby again once it has caught up', async () => {
    await caughtUp();
    const env = { DATABASE_URL: primary.url('lk'), DATABASE_READ_URL: standby.url('lk'), DATABASE_READ_MAX_LAG: '2', WEB_PROCESSES: '1' };
    const lagged = await startServe(env, ['--smtp', '--web']);
    const at = async (p: string) => (await fetch(`${lagged.webUrl}${p}`, { redirect: 'manual' })).status;
    try {
      await on(standby, 'select pg_wal_replay_pause()', 'postgres');
      await post('while-lagging@example.org', 'Written while the standby stalled');
      // At first the stalled standby answers (it has not replayed the post); past the bound, the primary.
      expect(await at('/message-id/while-lagging@example.org')).toBe(404);
      const t0 = Date.now();
      await until('reads go to the primary', async () => (await at('/message-id/while-lagging@example.org')) === 200, 15_000);
      expect(Date.now() - t0).toBeLessThan(8_000);
      expect(lagged.output()).toContain('read replica lagging more than DATABASE_READ_MAX_LAG: reading from the primary');
      const metrics = await (await fetch(`${lagged.webUrl}/metrics`)).text();
      expect(Number(/listkeeper_read_fallbacks_total\{reason="lagging"\} (\d+)/.exec(metrics)?.[1] ?? 0)).toBeGreaterThan(0);
      await on(standby, 'select pg_wal_replay_resume()', 'postgres');
      await caughtUp();
      await until('the standby is read again', async () => lagged.output().includes('read replica caught up: reading from it'), 10_000);
      // Paused again: a post the standby has not replayed is not found, so reads went back to it.
      await on(standby, 'select pg_wal_replay_pause()', 'postgres');
      await post('after-catching-up@example.org', 'Written after the standby caught up');
      expect(await at('/message-id/after-catching-up@example.org')).toBe(404);
    } finally {
      await on(standby, 'select pg_wal_replay_resume()', 'postgres');
      lagged.child.kill('SIGKILL');
    }
  }, 60_000);

  it('still finds the standby lagging after the web machine\'s clock jumped back an hour: the lag is timed on the monotonic clock', async () => {
    await caughtUp();
    const clock = jumpingClock();
    const env = { DATABASE_URL: primary.url('lk'), DATABASE_READ_URL: standby.url('lk'), DATABASE_READ_MAX_LAG: '2', WEB_PROCESSES: '1', ...clock.env };
    const lagged = await startServe(env, ['--smtp', '--web']);
    const at = async (p: string) => (await fetch(`${lagged.webUrl}${p}`, { redirect: 'manual' })).status;
    try {
      expect(await at('/message-id/none-yet@example.org')).toBe(404); // the pools open, and the lag is watched
      await new Promise((r) => setTimeout(r, 2_500)); // positions noted before the jump
      clock.jump('-1h');
      await on(standby, 'select pg_wal_replay_pause()', 'postgres');
      await post('lagging-after-jump@example.org', 'Written after the clock jumped');
      expect(await at('/message-id/lagging-after-jump@example.org')).toBe(404);
      await until('reads go to the primary', async () => (await at('/message-id/lagging-after-jump@example.org')) === 200, 10_000);
    } finally {
      await on(standby, 'select pg_wal_replay_resume()', 'postgres');
      lagged.child.kill('SIGKILL');
      clock.remove();
    }
  }, 60_000);
});
