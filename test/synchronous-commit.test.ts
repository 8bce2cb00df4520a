/*
 * "250 means on two machines" (issue 14, item 5). A private primary with a synchronous standby
 * (synchronous_standby_names = '*'), its database otherwise committing locally; one list set to
 * synchronous_commit=remote_write. A post to that list is acknowledged only once the standby has
 * it: while the standby is down its 250 waits (another list's does not), and after a 250 the
 * primary can be killed and the standby promoted with the post there.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../src/config.ts';
import { strongest } from '../src/core/post.ts';
import type { SynchronousCommit } from '../src/list-policies.ts';
import { cli, startServe, type RunningServe } from './helpers/cli.ts';
import { pgRun, primaryWithStandby, type PrivatePostgres } from './helpers/private-postgres.ts';
import { message, sendRaw } from './helpers/smtp.ts';

let servers: Awaited<ReturnType<typeof primaryWithStandby>> | undefined;
let primary: PrivatePostgres;
let standby: PrivatePostgres;
let serve: RunningServe | undefined;
const SAFE = 'safe@lists.example.org';
const PLAIN = 'plain@lists.example.org';

// POST_SYNCHRONOUS_COMMIT (config.ts) and a list's setting take the same values: tsc fails if they part.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const agree: Same<SynchronousCommit, NonNullable<Config['postSynchronousCommit']>> = true;
void agree;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const on = <T>(server: PrivatePostgres, sql: string, database = 'lk') => server.query<T>(sql, database);

const send = (list: string, id: string) => sendRaw(serve!.smtpPort, { from: 'alice@example.org', to: [list] }, message({ id, to: list, subject: `post ${id}` }));
const archivedOn = async (server: PrivatePostgres, id: string) =>
  (await on<{ n: number }>(server, `select count(*)::int as n from messages where message_id = '${id}'`))[0].n === 1;

beforeAll(async () => {
  servers = await primaryWithStandby('lk-synccommit-');
  ({ primary, standby } = servers);
  // Everything else commits without waiting for the standby: only the list's setting makes a post wait.
  await on(primary, 'alter database lk set synchronous_commit = local', 'postgres');
  // The standby is synchronous from now on (before it ran, the commands above would have waited for it).
  await on(primary, "alter system set synchronous_standby_names = '*'", 'postgres');
  await on(primary, 'select pg_reload_conf()', 'postgres');
  const env = { DATABASE_URL: primary.url('lk'), MAIL_DOMAIN: 'lists.example.org' };
  expect((await cli(['migrate'], env)).code).toBe(0);
  for (const list of [SAFE, PLAIN]) expect((await cli(['list', 'create', list, '--post-policy', 'open'], env)).code).toBe(0);
  const set = await cli(['list', 'set', SAFE, 'synchronous_commit=remote_write'], env);
  expect(set.stderr).toBe('');
  const refused = await cli(['list', 'set', SAFE, 'synchronous_commit=off'], env);
  expect(refused.code).not.toBe(0);
  expect(refused.stderr).toContain('synchronous_commit');
  serve = await startServe({ ...env, WEB_PROCESSES: '1' }, ['--smtp', '--web']);
}, 120_000);

afterAll(async () => {
  serve?.child.kill('SIGKILL');
  servers?.remove();
});

describe('synchronous_commit per list', () => {
  it('takes the most demanding level of a batch', () => {
    expect(strongest([null, 'local', 'remote_write', null])).toBe('remote_write');
    expect(strongest(['on', 'remote_write'])).toBe('on');
    expect(strongest([null, null])).toBe(null);
  });

  it('acknowledges a post to the list only once the standby has it', async () => {
    expect((await send(SAFE, 'first@example.org')).ok).toBe(true);
    standby.stop('fast');
    // The other list does not wait for the standby.
    expect((await send(PLAIN, 'plain@example.org')).ok).toBe(true);
    // This one does: no answer while the standby is away ...
    let answered = false;
    const waiting = send(SAFE, 'waits@example.org').then((r) => {
      answered = true;
      return r;
    });
    await sleep(3000);
    expect(answered).toBe(false);
    // ... and its 250 once the standby is back, with the post on it.
    standby.start();
    const r = await waiting;
    expect(r.ok).toBe(true);
    expect(await archivedOn(standby, 'waits@example.org')).toBe(true);
  }, 60_000);

  it("does not hold up another list's posts, however many of the waiting list's posts wait", async () => {
    standby.stop('fast');
    // More posts to the waiting list than the listener commits at once (DEFAULT_MAX_CONCURRENT):
    // an owner who sets their list to wait for the standby must not stop the site's other lists.
    const waiting = Array.from({ length: 8 }, (_, i) => send(SAFE, `queued-${i}@example.org`));
    try {
      for (let i = 0; i < 100; i++) {
        await sleep(100);
        const [{ n }] = await on<{ n: number }>(primary, "select count(*)::int as n from pg_stat_activity where wait_event = 'SyncRep'", 'postgres');
        if (n >= 1) break;
      }
      await sleep(500);
      const plain = await Promise.race([send(PLAIN, 'not-held-up@example.org'), sleep(8000).then(() => ({ ok: 'no answer in 8 s' }))]);
      expect(plain.ok).toBe(true);
    } finally {
      standby.start();
    }
    for (const r of await Promise.all(waiting)) expect(r.ok).toBe(true);
  }, 60_000);

  it('answers a post committed before its connection died only once the standby has it', async () => {
    standby.stop('fast');
    let answered = false;
    const waiting = send(SAFE, 'retried@example.org').then((r) => {
      answered = true;
      return r;
    });
    // The post is committed on the primary, its COMMIT waiting for the standby: that backend is killed.
    let pid: number | undefined;
    for (let i = 0; i < 100 && pid === undefined; i++) {
      await sleep(100);
      pid = (await on<{ pid: number }>(primary, "select pid from pg_stat_activity where wait_event = 'SyncRep'", 'postgres'))[0]?.pid;
    }
    expect(pid).toBeDefined();
    await on(primary, `select pg_terminate_backend(${pid})`, 'postgres');
    // Tried again on a new connection, the post is found already there: its 250 still waits for the standby.
    try {
      expect(await archivedOn(primary, 'retried@example.org')).toBe(true);
      await sleep(3000);
      expect(answered).toBe(false);
    } finally {
      standby.start();
    }
    const r = await waiting;
    expect(r.ok).toBe(true);
    expect(await archivedOn(standby, 'retried@example.org')).toBe(true);
  }, 60_000);

  it('keeps an acknowledged post when the primary dies and the standby is promoted', async () => {
    const r = await send(SAFE, 'survives@example.org');
    expect(r.ok).toBe(true);
    serve!.child.kill('SIGKILL');
    serve = undefined;
    primary.stop('immediate');
    pgRun('pg_ctl', ['promote', '-w', '-t', '60', '-D', standby.dir]);
    expect(await archivedOn(standby, 'survives@example.org')).toBe(true);
    // Promoted, it is the primary now: it takes writes.
    expect((await on<{ recovering: boolean }>(standby, 'select pg_is_in_recovery() as recovering'))[0].recovering).toBe(false);
  }, 60_000);
});
