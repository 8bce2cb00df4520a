/*
 * The REST API (/api/v1, docs/api.md) over real HTTP to the real app: tokens from the command line
 * and the panel, each scope's boundaries, refusals as {error, detail} with their status, pages of
 * collections, and the same effects as the command line (a held post approved here is archived
 * and queued for the members). Every response of this file is checked against the OpenAPI
 * document the server publishes (test/helpers/openapi.ts), and every operation of the document
 * must have been exercised by the end.
 */

import crypto from 'node:crypto';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiToken } from '../src/core/api-tokens.ts';
import { mergeAccount } from '../src/db/account-merge.ts';
import { createList } from '../src/db/lists.ts';
import { withTransaction } from '../src/db/pool.ts';
import { addMember } from '../src/db/members.ts';
import { cli } from './helpers/cli.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { loggedIn, queuedMail, type WebClient } from './helpers/browser.ts';
import { OpenApiChecker } from './helpers/openapi.ts';
import { message, sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';

let db: TestDatabase;
let web: RunningWeb;
let smtp: RunningIngest;
let env: Record<string, string>;
let checker: OpenApiChecker;
const tokens: Record<'read' | 'moderate' | 'admin', string> = { read: '', moderate: '', admin: '' };
let adminTokenId = 0;

interface ApiReply {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  headers: Headers;
}

/**
 * One API request; its response is checked against the OpenAPI document (status documented, body
 * valid) unless `unchecked` (a URL outside the document, to test the fallback).
 */
async function api(method: string, path: string, opts: { token?: string | null; json?: unknown; body?: string; headers?: Record<string, string>; base?: string; unchecked?: boolean } = {}): Promise<ApiReply> {
  const headers: Record<string, string> = { ...opts.headers };
  const token = opts.token === undefined ? tokens.admin : opts.token;
  if (token) headers.authorization = `Bearer ${token}`;
  let body = opts.body;
  if (opts.json !== undefined) {
    body = JSON.stringify(opts.json);
    headers['content-type'] ??= 'application/json';
  }
  const res = await fetch(`${opts.base ?? web.url}${path.startsWith('/api/') ? path : `/api/v1${path}`}`, { method, headers, body, redirect: 'manual' });
  const text = await res.text();
  expect(res.headers.get('content-type'), `${method} ${path}: ${text.slice(0, 200)}`).toMatch(/^application\/json/);
  const parsed = JSON.parse(text);
  // No cookie is ever set by the API (sessions, CSRF and flash notices are the pages').
  expect(res.headers.getSetCookie(), `${method} ${path} set a cookie`).toEqual([]);
  if (!opts.unchecked) expect(checker.check(method, path.startsWith('/api/') ? path : `/api/v1${path}`, res.status, parsed)).toEqual([]);
  return { status: res.status, body: parsed, headers: res.headers };
}

/** The next page's path from a page's Link header (RFC 8288), or null on the last page. */
function nextPage(r: ApiReply): string | null {
  const link = r.headers.get('link');
  if (link === null) return null;
  const m = /^<([^>]+)>; rel="next"$/.exec(link);
  expect(m, `Link: ${link}`).not.toBeNull();
  // Absolute, under PUBLIC_URL: fetch() takes it as it is.
  expect(m![1].startsWith(`${web.url}/api/v1/`), m![1]).toBe(true);
  return m![1].slice(web.url.length);
}

async function hold(id: string, from = 'alice@example.org', subject = 'Hello'): Promise<number> {
  const sent = await sendRaw(smtp.port, { from, to: ['mod@lists.example.org'] }, message({ id, from: `Sender <${from}>`, to: 'mod@lists.example.org', subject }));
  expect(sent.ok, sent.response).toBe(true);
  const { rows } = await db.pool.query<{ id: number }>(`select id from held_messages where message_id = $1`, [id]);
  return rows[0].id;
}

const postCopies = async (messageId: string) =>
  (await db.pool.query(`select o.recipient from outbox o join messages m on m.id = o.message_id where o.kind = 'post' and m.message_id = $1 order by o.recipient`, [messageId])).rows.map((r) => r.recipient);

beforeAll(async () => {
  db = await testDatabase();
  env = { DATABASE_URL: db.url, MAIL_DOMAIN: 'lists.example.org' };
  web = await startWeb(db);
  smtp = await startIngest(db.pool);
  checker = new OpenApiChecker(await (await fetch(`${web.url}/api/v1/openapi.json`)).json());
  // The admin token as an operator makes it: from the command line.
  const made = await cli(['token', 'create', '--scope', 'admin', '--name', 'ops-script', '--json'], env);
  expect(made.stderr).toBe('');
  const created = JSON.parse(made.stdout);
  tokens.admin = created.token;
  adminTokenId = created.id;
  tokens.read = (await createApiToken(db.pool, { scope: 'read', name: 'dashboard', actor: 'test' })).token;
  tokens.moderate = (await createApiToken(db.pool, { scope: 'moderate', name: 'mod-bot', actor: 'test' })).token;
  const mod = await createList(db.pool, { address: 'mod@lists.example.org', name: 'Moderated', description: 'held posts', postPolicy: 'moderated', subscribePolicy: 'confirm', archive: 'public', owners: ['owner@example.org'] });
  await addMember(db.pool, mod.id, 'reader1@example.net', 'each');
  await addMember(db.pool, mod.id, 'reader2@example.net', 'each');
  await addMember(db.pool, mod.id, 'digester@example.net', 'digest');
});
afterAll(async () => {
  await smtp?.stop();
  await web?.stop();
  await db?.drop();
});

describe('tokens', () => {
  it('token create prints the secret once; only its SHA-256 is stored, and token ls never shows it', async () => {
    expect(tokens.admin).toMatch(/^lkt_[A-Za-z0-9_-]{43}$/);
    const { rows } = await db.pool.query(`select * from api_tokens where id = $1`, [adminTokenId]);
    expect(rows[0]).toMatchObject({ name: 'ops-script', scope: 'admin', token_hash: crypto.createHash('sha256').update(tokens.admin).digest('hex'), revoked_at: null });
    expect(JSON.stringify(rows[0])).not.toContain(tokens.admin.slice(4));
    const ls = await cli(['token', 'ls', '--json'], env);
    expect(ls.code).toBe(0);
    expect(JSON.parse(ls.stdout).map((t: { name: string; scope: string }) => `${t.name}:${t.scope}`)).toEqual(['mod-bot:moderate', 'dashboard:read', 'ops-script:admin']);
    expect(ls.stdout).not.toContain('lkt_');
    expect(ls.stdout).not.toContain('token_hash');
    // Plain output for a shell: the token alone on stdout, the words on stderr.
    const plain = await cli(['token', 'create', '--scope', 'read'], env);
    expect(plain.code).toBe(0);
    expect(plain.stdout).toMatch(/^lkt_[A-Za-z0-9_-]{43}\n$/);
    expect(plain.stderr).toContain('not shown again');
    const bad = await cli(['token', 'create', '--scope', 'root'], env);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('scope must be one of read, moderate, admin');
    const audit = await db.pool.query(`select actor, action, target from audit_log where action = 'token.create' and target = $1`, [`api:ops-script#${adminTokenId}`]);
    expect(audit.rows).toEqual([{ actor: expect.stringMatching(/^cli:/), action: 'token.create', target: `api:ops-script#${adminTokenId}` }]);
  });

  it('refuses a request without a token, with a wrong one, or with only a logged-in session cookie (401)', async () => {
    const none = await api('GET', '/lists', { token: null });
    expect(none.status).toBe(401);
    expect(none.body).toEqual({ error: 'unauthorized', detail: expect.stringContaining('Authorization: Bearer') });
    expect(none.headers.get('www-authenticate')).toBe('Bearer realm="listkeeper"');
    const wrong = await api('GET', '/lists', { token: `lkt_${'A'.repeat(43)}` });
    expect(wrong.status).toBe(401);
    expect(wrong.body.error).toBe('invalid_token');
    expect(wrong.headers.get('www-authenticate')).toContain('error="invalid_token"');
    // A site administrator's browser session does not authenticate an API call: cookies are not read.
    const admin = await loggedIn(db, web.url, 'siteadmin@example.org', { siteAdmin: true });
    const cookie = [...admin.jar].map(([k, v]) => `${k}=${v}`).join('; ');
    const withCookie = await api('POST', '/lists', { token: null, json: { address: 'csrf-victim' }, headers: { cookie } });
    expect(withCookie.status).toBe(401);
    expect((await db.pool.query(`select 1 from lists where address = 'csrf-victim@lists.example.org'`)).rowCount).toBe(0);
  });

  it('records when a token was last used', async () => {
    await db.pool.query(`update api_tokens set last_used_at = null where name = 'dashboard'`);
    expect((await api('GET', '/queue', { token: tokens.read })).status).toBe(200);
    const { rows } = await db.pool.query(`select last_used_at from api_tokens where name = 'dashboard'`);
    expect(Date.now() - rows[0].last_used_at.getTime()).toBeLessThan(60_000);
  });

  it('serves the OpenAPI document without a token, and its schemas compile as JSON Schema 2020-12', async () => {
    const res = await fetch(`${web.url}/api/v1/openapi.json`);
    expect(res.status).toBe(200);
    const doc = await res.json();
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.components.securitySchemes.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(checker.compileAll()).toContain('List');
  });
});

describe('scopes', () => {
  it('read reads everything and changes nothing; moderate also moderates; only admin changes lists and members (403 insufficient_scope)', async () => {
    const held = await hold('scope-check@example.org');
    const L = '/lists/mod@lists.example.org';
    const table: [string, string, unknown, Record<'read' | 'moderate' | 'admin', number>][] = [
      ['GET', '/lists', undefined, { read: 200, moderate: 200, admin: 200 }],
      ['GET', `${L}/members`, undefined, { read: 200, moderate: 200, admin: 200 }],
      ['GET', `${L}/held`, undefined, { read: 200, moderate: 200, admin: 200 }],
      ['GET', '/audit', undefined, { read: 200, moderate: 200, admin: 200 }],
      ['POST', `${L}/rules`, { pattern: '@scope.example', kind: 'ban' }, { read: 403, moderate: 200, admin: 200 }],
      ['PATCH', L, { description: 'changed by scope test' }, { read: 403, moderate: 403, admin: 200 }],
      ['POST', `${L}/members`, { email: 'scope@example.net' }, { read: 403, moderate: 403, admin: 200 }],
      ['POST', '/lists', { address: 'scoped' }, { read: 403, moderate: 403, admin: 201 }],
    ];
    for (const [method, path, json, want] of table) {
      for (const scope of ['read', 'moderate', 'admin'] as const) {
        const r = await api(method, path, { token: tokens[scope], json });
        expect(r.status, `${scope} ${method} ${path}: ${JSON.stringify(r.body)}`).toBe(want[scope]);
        if (r.status === 403) expect(r.body.error).toBe('insufficient_scope');
      }
    }
    // A read token cannot decide a held post; a moderate token can.
    expect((await api('POST', `${L}/held/${held}/discard`, { token: tokens.read })).status).toBe(403);
    expect((await api('GET', `${L}/held/${held}`, { token: tokens.read })).body.state).toBe('held');
    const done = await api('POST', `${L}/held/${held}/discard`, { token: tokens.moderate });
    expect(done.status).toBe(200);
    expect(done.body).toMatchObject({ id: held, state: 'discarded', decided_by: expect.stringMatching(/^api:mod-bot#\d+$/) });
  });

  it('refuses a revoked token at once (401), and the CLI revokes by id', async () => {
    const { token, row } = await createApiToken(db.pool, { scope: 'admin', name: 'short-lived', actor: 'test' });
    expect((await api('GET', '/lists', { token })).status).toBe(200);
    const r = await cli(['token', 'revoke', String(row.id)], env);
    expect(r.stdout).toBe(`token ${row.id} "short-lived" revoked\n`);
    const after = await api('GET', '/lists', { token });
    expect(after.status).toBe(401);
    expect(after.body.error).toBe('invalid_token');
    const again = await cli(['token', 'revoke', String(row.id)], env);
    expect(again.code).toBe(3);
    expect(again.stderr).toContain('already revoked');
  });
});

describe('lists', () => {
  it('creates a list, shows it in the shape of `list show --json`, changes settings through list set\'s checks, and deletes it', async () => {
    const made = await api('POST', '/lists', { json: { address: 'api-dev', name: 'API Dev', description: 'made over HTTP', owners: ['Owner@Example.org'], post_policy: 'open', archive: 'members' } });
    expect(made.status).toBe(201);
    expect(made.headers.get('location')).toBe('/api/v1/lists/api-dev%40lists.example.org');
    expect(made.body).toMatchObject({ address: 'api-dev@lists.example.org', name: 'API Dev', post_policy: 'open', subscribe_policy: 'confirm', archive: 'members', owners: ['owner@example.org'], members: 0, messages: 0 });
    expect((await api('POST', '/lists', { json: { address: 'api-dev' } })).status).toBe(409);

    const patched = await api('PATCH', '/lists/api-dev', { json: { subject_prefix: '[api] ', max_message_size: 2048, notify_held_sender: true, reply_to_address: null, post_policy: 'moderated' }, headers: { 'content-type': 'application/merge-patch+json' } });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ subject_prefix: '[api] ', max_message_size: 2048, notify_held_sender: true, reply_to_address: null, post_policy: 'moderated' });
    // The same shape and values as the command line's.
    const show = await cli(['list', 'show', 'api-dev', '--json'], env);
    expect(JSON.parse(show.stdout)).toEqual(JSON.parse(JSON.stringify(patched.body)));
    // Refused by the same checks as `list set`, all problems at once, nothing changed.
    const bad = await api('PATCH', '/lists/api-dev', { json: { post_policy: 'everyone', max_message_size: -1, colour: 'blue', subject_prefix: 'unchanged' } });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toBe('invalid_input');
    const cliBad = await cli(['list', 'set', 'api-dev', 'post_policy=everyone', 'max_message_size=-1', 'colour=blue', 'subject_prefix=unchanged'], env);
    expect(`listkeeper: ${bad.body.detail}\n`).toBe(cliBad.stderr);
    expect((await api('GET', '/lists/api-dev')).body.subject_prefix).toBe('[api] ');
    expect((await api('PATCH', '/lists/api-dev', { json: { footer: { text: 'x' } } })).status).toBe(400);
    expect((await api('PATCH', '/lists/api-dev', { json: {} })).status).toBe(400);
    const audit = await db.pool.query(`select actor, detail from audit_log where action = 'list.settings' and list_address = 'api-dev@lists.example.org'`);
    expect(audit.rows).toEqual([{ actor: `api:ops-script#${adminTokenId}`, detail: { subject_prefix: '[api] ', max_message_size: 2048, notify_held_sender: true, post_policy: 'moderated' } }]);

    const gone = await api('DELETE', '/lists/api-dev');
    expect(gone.body).toEqual({ address: 'api-dev@lists.example.org', deleted: true, members: 0, messages: 0, only_here: 0, roles: 1 });
    const missing = await api('GET', '/lists/api-dev');
    expect(missing.status).toBe(404);
    expect(missing.body).toEqual({ error: 'no_such_list', detail: 'no list api-dev' });
  });

  it('refuses 60,000 unknown settings in one short answer: the first 20, a count of the rest, the valid names once', async () => {
    const json = Object.fromEntries(Array.from({ length: 60_000 }, (_, i) => [`k${i}`, 1]));
    const r = await api('PATCH', '/lists/mod', { json });
    expect(r.status).toBe(400);
    const problems = r.body.detail.split('; ');
    expect(problems.slice(0, 2)).toEqual(['k0: no such setting', 'k1: no such setting']);
    expect(problems[19]).toBe('k19: no such setting');
    expect(problems[20]).toBe('… and 59980 more');
    expect(problems[21]).toMatch(/^settings: name, description, .*subject_prefix/);
    expect(problems).toHaveLength(22);
    expect(r.body.detail.match(/subject_prefix/g)).toHaveLength(1);
  });

  it('pages through lists by address with limit and cursor, following next', async () => {
    for (const name of ['page-a', 'page-b', 'page-c']) await createList(db.pool, { address: `${name}@lists.example.org`, name, description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: [] });
    const all: { address: string }[] = [];
    let next: string | null = '/lists?limit=2';
    let pages = 0;
    while (next) {
      const r: ApiReply = await api('GET', next);
      // A page is the array `list ls --json` prints; the next one is named only in the Link header.
      expect(Array.isArray(r.body)).toBe(true);
      expect(r.body.length).toBeLessThanOrEqual(2);
      all.push(...r.body);
      next = nextPage(r);
      if (next) expect(next).toMatch(/^\/api\/v1\/lists\?limit=2&cursor=[A-Za-z0-9_-]+$/);
      pages++;
    }
    const expected = (await db.pool.query(`select address from lists`)).rows.map((r) => r.address).sort();
    expect(all.map((l) => l.address)).toEqual(expected);
    expect(pages).toBe(Math.ceil(expected.length / 2));
    // Item for item what the command line prints, in the API's order (by address).
    const cliLists: { address: string }[] = JSON.parse((await cli(['list', 'ls', '--json'], env)).stdout);
    expect(all).toEqual(cliLists.sort((x, y) => (x.address < y.address ? -1 : 1)));
    expect((await api('GET', '/lists?limit=0')).status).toBe(400);
    expect((await api('GET', '/lists?limit=501')).status).toBe(400);
    const forged = await api('GET', '/lists?cursor=not-a-cursor');
    expect(forged.status).toBe(400);
    expect(forged.body.error).toBe('invalid_cursor');
  });
});

describe('members', () => {
  it('adds in bulk with modes and names, reporting each entry, and pages the roster as `members --json` shows it', async () => {
    const r = await api('POST', '/lists/mod/members', {
      json: { mode: 'digest', members: ['Zed <zed@example.net>', 'not an address', { email: 'Yan@Example.net', name: 'Yan', mode: 'nomail' }, 'reader1@example.net', { email: 'x@y' }] },
    });
    expect(r.status).toBe(200);
    expect(r.body).toEqual([
      { email: 'zed@example.net', name: 'Zed', result: 'added' },
      { input: 'not an address', result: 'invalid', error: '"not an address" is not an e-mail address' },
      { email: 'yan@example.net', name: 'Yan', result: 'added' },
      { email: 'reader1@example.net', name: null, result: 'updated' },
      { input: 'x@y', result: 'invalid', error: '"x@y" is not an e-mail address' },
    ]);
    const pages: unknown[] = [];
    let next: string | null = '/api/v1/lists/mod/members?limit=2';
    while (next) {
      const p: ApiReply = await api('GET', next);
      pages.push(...p.body);
      next = nextPage(p);
    }
    const members = await cli(['members', 'mod', '--json'], env);
    expect(pages).toEqual(JSON.parse(members.stdout));
    expect(pages).toContainEqual({ email: 'yan@example.net', name: 'Yan', mode: 'nomail', status: 'active', bounce_score: 0 });
    const filtered = await api('GET', '/lists/mod/members?mode=digest');
    expect(filtered.body.map((m: { email: string }) => m.email)).toEqual(['digester@example.net', 'reader1@example.net', 'zed@example.net']);
    expect((await api('GET', '/lists/mod/members?status=gone')).status).toBe(400);
    const audit = await db.pool.query(`select actor, detail from audit_log where action = 'member.add' and actor like 'api:%'`);
    expect(audit.rows).toContainEqual({ actor: `api:ops-script#${adminTokenId}`, detail: expect.objectContaining({ count: 3, mode: 'digest' }) });
  });

  it('reads a name given as {email, name} as it reads one in "Name <EMAIL>": encoded words decoded, one line', async () => {
    const r = await api('POST', '/lists/mod/members', {
      json: { members: [{ email: 'jose@example.net', name: '=?utf-8?q?Jos=C3=A9?= Ruiz' }, { email: 'two-lines@example.net', name: 'Ann\r\nBcc: x@example.com' }] },
    });
    expect(r.status).toBe(200);
    expect(r.body).toEqual([
      { email: 'jose@example.net', name: 'José Ruiz', result: 'added' },
      { email: 'two-lines@example.net', name: 'Ann  Bcc: x@example.com', result: 'added' },
    ]);
    const stored = await db.pool.query(`select name from members where email = 'two-lines@example.net'`);
    expect(stored.rows[0].name).toBe('Ann  Bcc: x@example.com');
    // Not members of mod for the tests below, which count its copies.
    await db.pool.query(`delete from members where email in ('jose@example.net', 'two-lines@example.net')`);
  });

  it('changes a member\'s mode (a pause with an end date), removes a member, and says 404 for one who is not there', async () => {
    const until = new Date(Date.now() + 10 * 86_400_000).toISOString().slice(0, 10);
    const paused = await api('PATCH', '/lists/mod/members/zed@example.net', { json: { mode: 'nomail', until } });
    expect(paused.status).toBe(200);
    expect(paused.body).toEqual({ email: 'zed@example.net', name: 'Zed', mode: 'nomail', status: 'active', bounce_score: 0, nomail_until: until });
    expect((await api('PATCH', '/lists/mod/members/zed@example.net', { json: { mode: 'each', until } })).status).toBe(400);
    expect((await api('PATCH', '/lists/mod/members/zed@example.net', { json: { mode: 'each' } })).body.mode).toBe('each');
    const removed = await api('DELETE', '/lists/mod/members/zed@example.net');
    expect(removed.body).toEqual({ email: 'zed@example.net', result: 'unsubscribed' });
    expect((await api('DELETE', '/lists/mod/members/zed@example.net')).body).toEqual({ email: 'zed@example.net', result: 'unchanged' });
    const missing = await api('PATCH', '/lists/mod/members/zed@example.net', { json: { mode: 'each' } });
    expect(missing.status).toBe(404);
    expect(missing.body.error).toBe('no_such_member');
  });
});

describe('held messages', () => {
  it('lists held posts as `held --json` does, and an approval releases the post to the members exactly as `moderate` does', async () => {
    const a = await hold('approve-api@example.org', 'alice@example.org', 'Approve via API');
    const b = await hold('reject-api@example.org', 'bob@example.org', 'Reject via API');
    const c = await hold('page-api@example.org', 'carol@example.org', 'Third');
    const first = await api('GET', '/lists/mod/held?limit=2', { token: tokens.read });
    const second = await api('GET', nextPage(first)!, { token: tokens.read });
    const listed = [...first.body, ...second.body];
    expect(nextPage(second)).toBeNull();
    const cliHeld = await cli(['held', 'mod', '--json'], env);
    expect(listed).toEqual(JSON.parse(cliHeld.stdout));
    expect(listed.map((h: { id: number }) => h.id)).toEqual([a, b, c]);
    expect(listed[0]).toEqual({ id: a, message_id: 'approve-api@example.org', from: 'alice@example.org', subject: 'Approve via API', reason: expect.any(String), received_at: expect.any(String) });

    const approved = await api('POST', `/lists/mod/held/${a}/approve`, { token: tokens.moderate });
    expect(approved.status).toBe(200);
    expect(approved.body).toMatchObject({ id: a, state: 'approved', decided_by: expect.stringMatching(/^api:mod-bot#/) });
    // Archived, and one copy queued for each member who takes each post (reader1 went to digests above), as an accepted post.
    expect(await postCopies('approve-api@example.org')).toEqual(['reader2@example.net', 'scope@example.net']);
    expect((await fetch(`${web.url}/message-id/approve-api@example.org`)).status).toBe(200);
    const twice = await api('POST', `/lists/mod/held/${a}/approve`, { token: tokens.moderate });
    expect(twice.status).toBe(409);
    expect(twice.body.error).toBe('already_decided');
    expect(await postCopies('approve-api@example.org')).toEqual(['reader2@example.net', 'scope@example.net']);

    const rejected = await api('POST', `/lists/mod/held/${b}/reject`, { token: tokens.moderate, json: { reason: 'Please stay on topic.' } });
    expect(rejected.body).toMatchObject({ state: 'rejected', decision_reason: 'Please stay on topic.' });
    const notice = await queuedMail(db, 'bob@example.org');
    expect(notice).toHaveLength(1);
    expect(notice[0].text).toContain('Please stay on topic.');

    expect((await api('POST', `/lists/mod/held/${c}/shred`, { token: tokens.moderate })).status).toBe(404);
    expect((await api('POST', `/lists/page-a/held/${c}/discard`, { token: tokens.moderate })).status).toBe(404);
    expect((await api('GET', '/lists/mod/held/99999999', { token: tokens.read })).body.error).toBe('no_such_held');
    const audit = await db.pool.query(`select action, target from audit_log where actor like 'api:mod-bot#%' and action like 'held.%' order by id`);
    expect(audit.rows).toEqual([
      { action: 'held.discard', target: 'scope-check@example.org' },
      { action: 'held.approve', target: 'approve-api@example.org' },
      { action: 'held.reject', target: 'reject-api@example.org' },
    ]);
  });
});

describe('held-queue cursors', () => {
  it('refuses a held-queue cursor that is not an id this API gave out ("1e3", "-1", "0x10", " "), rather than paging from wherever Number() reads it', async () => {
    const cursor = (key: string) => Buffer.from(JSON.stringify(key), 'utf8').toString('base64url');
    for (const key of ['1e3', '-1', '0x10', ' ', '1.0']) {
      const r = await api('GET', `/lists/mod/held?cursor=${cursor(key)}`, { token: tokens.read });
      expect(r.status, key).toBe(400);
      expect(r.body.error, key).toBe('invalid_cursor');
    }
    expect((await api('GET', `/lists/mod/held?cursor=${cursor('0')}`, { token: tokens.read })).status).toBe(200);
  });
});

describe('sender rules, hidden messages, queue, audit', () => {
  it('allows, bans and removes senders as `rules` does', async () => {
    const set = await api('POST', '/lists/mod/rules', { token: tokens.moderate, json: { pattern: 'Friend@Example.org', kind: 'allow', days: 7 } });
    expect(set.body).toMatchObject({ pattern: 'friend@example.org', kind: 'allow' });
    expect(new Date(set.body.expires_at).getTime() - Date.now()).toBeGreaterThan(6.9 * 86_400_000);
    expect((await api('POST', '/lists/mod/rules', { token: tokens.moderate, json: { pattern: 'not-an-address', kind: 'ban' } })).body.error).toBe('invalid_email');
    expect((await api('POST', '/lists/mod/rules', { token: tokens.moderate, json: { pattern: '@x.example', kind: 'ban', days: 0 } })).status).toBe(400);
    const listed = await api('GET', '/lists/mod/rules', { token: tokens.read });
    const cliRules = await cli(['rules', 'mod', '--json'], env);
    expect(listed.body).toEqual(JSON.parse(cliRules.stdout).sort((x: { pattern: string }, y: { pattern: string }) => (x.pattern < y.pattern ? -1 : 1)));
    expect(listed.body.map((r: { pattern: string; kind: string }) => `${r.kind} ${r.pattern}`)).toEqual(['ban @scope.example', 'allow friend@example.org']);
    const removed = await api('DELETE', `/lists/mod/rules/${encodeURIComponent('@scope.example')}`, { token: tokens.moderate });
    expect(removed.body).toEqual({ pattern: '@scope.example', removed: true });
    expect((await api('DELETE', `/lists/mod/rules/${encodeURIComponent('@scope.example')}`, { token: tokens.moderate })).status).toBe(404);
  });

  it('hides an archived message from its readers and shows it again', async () => {
    const hidden = await api('POST', '/lists/mod/messages/hide', { token: tokens.moderate, json: { message_id: '<approve-api@example.org>', reason: 'privacy', note: 'asked by the author' } });
    expect(hidden.body).toEqual({ message_id: 'approve-api@example.org', hidden: true, reason: 'privacy', note: 'asked by the author' });
    const page = await fetch(`${web.url}/message-id/approve-api@example.org`);
    expect(page.status).toBe(410);
    expect(await page.text()).toContain('privacy: asked by the author');
    expect((await api('POST', '/lists/mod/messages/hide', { token: tokens.moderate, json: { message_id: 'approve-api@example.org', reason: 'boredom' } })).status).toBe(400);
    expect((await api('POST', '/lists/mod/messages/hide', { token: tokens.moderate, json: { message_id: 'nowhere@example.org', reason: 'spam' } })).status).toBe(404);
    const shown = await api('POST', '/lists/mod/messages/unhide', { token: tokens.moderate, json: { message_id: 'approve-api@example.org' } });
    expect(shown.body).toEqual({ message_id: 'approve-api@example.org', hidden: false, changed: true });
    expect((await fetch(`${web.url}/message-id/approve-api@example.org`)).status).toBe(200);
    // Shown again when it is visible: nothing changed, and the audit log says nothing.
    const again = await api('POST', '/lists/mod/messages/unhide', { token: tokens.moderate, json: { message_id: 'approve-api@example.org' } });
    expect(again.body).toEqual({ message_id: 'approve-api@example.org', hidden: false, changed: false });
    const audit = await db.pool.query(`select action from audit_log where target = 'approve-api@example.org' and action like 'message.%' order by id`);
    expect(audit.rows.map((x) => x.action)).toEqual(['message.hide', 'message.unhide']);
  });

  it('reports the outbound queue as `queue --json` does', async () => {
    const q = await api('GET', '/queue', { token: tokens.read });
    const cliQueue = JSON.parse((await cli(['queue', '--json'], env)).stdout);
    // Ages are read at each call, a moment apart: compared apart, the rest as it is.
    type Ages = { oldestSeconds: number; conversions: { idle_seconds: number | null }[] };
    const ages = (b: Ages) => ({ ...b, oldestSeconds: 0, conversions: b.conversions.map((c) => ({ ...c, idle_seconds: 0 })) });
    expect(ages(q.body)).toEqual(ages(cliQueue));
    expect(Math.abs((q.body as Ages).oldestSeconds - (cliQueue as Ages).oldestSeconds)).toBeLessThan(30);
    const { rows } = await db.pool.query(`select count(*)::int as n from outbox where state = 'queued'`);
    expect(q.body.counts.queued).toBe(rows[0].n);
    expect(q.body.counts.queued).toBeGreaterThanOrEqual(3);
  });

  it('pages the audit log newest first, with every change named after its token', async () => {
    const seen: { id: number; actor: string; action: string }[] = [];
    let next: string | null = '/api/v1/audit?limit=5';
    while (next) {
      const p: ApiReply = await api('GET', next, { token: tokens.read });
      seen.push(...p.body);
      next = nextPage(p);
    }
    const { rows } = await db.pool.query(`select id from audit_log order by id desc`);
    expect(seen.map((e) => e.id)).toEqual(rows.map((r) => r.id));
    // A cursor is an id in decimal digits, nothing else Number() would read.
    for (const odd of ['0x10', ' ', '1e3', '-1']) {
      const r = await api('GET', `/audit?cursor=${Buffer.from(JSON.stringify(odd)).toString('base64url')}`, { token: tokens.read });
      expect(r.status, odd).toBe(400);
      expect(r.body.error, odd).toBe('invalid_cursor');
    }
    const oneList = await api('GET', '/audit?list=mod&action=sender.', { token: tokens.read });
    expect(oneList.body.map((e: { action: string; actor: string }) => `${e.action} ${e.actor.replace(/#\d+$/, '')}`)).toEqual(['sender.remove api:mod-bot', 'sender.allow api:mod-bot', 'sender.ban api:ops-script', 'sender.ban api:mod-bot']);
  });
});

describe('hostile and malformed requests', () => {
  it('answers bad JSON 400, a form body 415, a body over 1 MB 413, a NUL 400, an unknown route 404, all as {error, detail}', async () => {
    const badJson = await api('POST', '/lists', { body: '{"address": ', headers: { 'content-type': 'application/json' } });
    expect(badJson.status).toBe(400);
    expect(badJson.body).toEqual({ error: 'invalid_json', detail: 'The request body is not valid JSON.' });
    const form = await api('POST', '/lists', { body: 'address=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(form.status).toBe(415);
    const big = await api('POST', '/lists/mod/members', { json: { members: Array.from({ length: 40_000 }, (_, i) => `someone-${i}@example.net`) } });
    expect(big.status).toBe(413);
    expect(big.body.error).toBe('too_large');
    const nul = await api('POST', '/lists', { json: { address: 'nul\u0000list' } });
    expect(nul.status).toBe(400);
    expect(nul.body.error).toBe('bad_request');
    const array = await api('PATCH', '/lists/mod', { json: ['post_policy'] });
    expect(array.status).toBe(400);
    const unknown = await api('GET', '/nothing-here', { unchecked: true });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toBe('not_found');
    expect(unknown.body.detail).toBe('There is no GET /api/v1/nothing-here in this API: see /api/v1/openapi.json.');
    const badUrl = await api('GET', '/lists/%ff');
    expect(badUrl.status).toBe(400);
    expect(badUrl.body.error).toBe('bad_request');
  });
});

describe('absolute-form request lines', () => {
  /** One request written as a proxy writes it, `GET http://host:port/… HTTP/1.1`, over a raw socket: status, Content-Type, body. */
  async function absoluteForm(target: string): Promise<{ status: number; type: string; body: string }> {
    const { host } = new URL(web.url);
    const socket = net.connect(Number(new URL(web.url).port), '127.0.0.1');
    try {
      socket.write(`GET ${web.url}${target} HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${tokens.admin}\r\nConnection: close\r\n\r\n`);
      const chunks: Buffer[] = [];
      for await (const chunk of socket) chunks.push(chunk as Buffer);
      const text = Buffer.concat(chunks).toString('utf8');
      const [head, ...rest] = text.split('\r\n\r\n');
      return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]), type: /^content-type: *(.*)$/im.exec(head)?.[1] ?? '', body: rest.join('\r\n\r\n') };
    } finally {
      socket.destroy();
    }
  }

  it("answers an API request that fails before the API's router with the API's JSON error, not the HTML page", async () => {
    const ok = await absoluteForm('/api/v1/lists/mod');
    expect([ok.status, ok.type]).toEqual([200, expect.stringMatching(/^application\/json/)]);
    // A path that is not UTF-8 is refused by checkUrl, before any router runs.
    const bad = await absoluteForm('/api/v1/lists/%ff');
    expect([bad.status, bad.type]).toEqual([400, expect.stringMatching(/^application\/json/)]);
    expect(JSON.parse(bad.body.slice(bad.body.indexOf('{'), bad.body.lastIndexOf('}') + 1))).toMatchObject({ error: 'bad_request' });
    // A page's address in the same form still gets the page's answer.
    const page = await absoluteForm('/lists/%ff');
    expect([page.status, page.type]).toEqual([400, expect.stringMatching(/^text\/html/)]);
  });
});

describe('deep bodies', () => {
  const nest = (depth: number, inner: unknown = []): unknown => (depth === 0 ? inner : [nest(depth - 1, inner)]);

  it('refuses JSON nested 5,000 deep with 400 too_deep, and names a bad entry by position and type', async () => {
    const body = `{"members":${'['.repeat(5000)}${']'.repeat(5000)}}`;
    const deep = await api('POST', '/lists/mod/members', { body, headers: { 'content-type': 'application/json' } });
    expect(deep.status).toBe(400);
    expect(deep.body).toEqual({ error: 'too_deep', detail: 'This request body nests more than 32 levels deep.' });
    // A NUL below the five levels the walk used to stop at is refused too.
    const nul = await api('POST', '/lists/mod/members', { json: { members: [nest(10, ['x\u0000@example.net'])] } });
    expect(nul.status).toBe(400);
    expect(nul.body.error).toBe('bad_request');
    const within = await api('POST', '/lists/mod/members', { json: { members: [nest(20), 7, null, { name: 'No Address' }] } });
    expect(within.status).toBe(200);
    const shape = 'an entry is "EMAIL", "Name <EMAIL>" or {"email": ..., "name": ..., "mode": ...}';
    expect(within.body).toEqual([
      { input: 'entry 1 (an array)', result: 'invalid', error: shape },
      { input: 'entry 2 (a number)', result: 'invalid', error: shape },
      { input: 'entry 3 (null)', result: 'invalid', error: shape },
      { input: 'entry 4 (an object)', result: 'invalid', error: '"email" is missing or not a string' },
    ]);
  });
});

describe('undecodable bodies', () => {
  it('answers a body that does not decompress 400, and an unknown Content-Encoding 415, in the API and the panel', async () => {
    for (const encoding of ['gzip', 'deflate', 'br']) {
      const r = await api('PATCH', '/lists/mod', { body: '{"subject_prefix":"x"}', headers: { 'content-type': 'application/json', 'content-encoding': encoding } });
      expect(r.status, encoding).toBe(400);
      expect(r.body).toEqual({ error: 'bad_request', detail: 'The request body could not be read: it was cut short, or does not decompress as its Content-Encoding says.' });
    }
    const foo = await api('PATCH', '/lists/mod', { body: '{"subject_prefix":"x"}', headers: { 'content-type': 'application/json', 'content-encoding': 'foo' } });
    expect(foo.status).toBe(415);
    expect(foo.body).toEqual({ error: 'unsupported_encoding', detail: 'The request body\'s Content-Encoding is not supported: send it as gzip, deflate, br or uncompressed.' });
    expect((await db.pool.query(`select subject_prefix from lists where address = 'mod@lists.example.org'`)).rows[0].subject_prefix).not.toBe('x');
    // The panel's forms are read by the same parsers: the same refusals, as pages.
    for (const [encoding, status] of [['gzip', 400], ['foo', 415]] as const) {
      const page = await fetch(`${web.url}/login`, { method: 'POST', body: 'email=a%40example.org', headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-encoding': encoding } });
      expect(page.status, encoding).toBe(status);
      expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    }
  });
});

describe('rate limits', () => {
  it('limits each token to API_RATE_LIMIT requests a minute (429 with Retry-After), other tokens unaffected', async () => {
    const limited = await startWeb(db, { API_RATE_LIMIT: '3' });
    try {
      const { token } = await createApiToken(db.pool, { scope: 'read', name: 'busy', actor: 'test' });
      for (let i = 0; i < 3; i++) expect((await api('GET', '/queue', { token, base: limited.url })).status).toBe(200);
      const over = await api('GET', '/queue', { token, base: limited.url });
      expect(over.status).toBe(429);
      expect(over.body.error).toBe('rate_limited');
      expect(over.headers.get('retry-after')).toBe('60');
      const other = await createApiToken(db.pool, { scope: 'read', name: 'calm', actor: 'test' });
      expect((await api('GET', '/queue', { token: other.token, base: limited.url })).status).toBe(200);
    } finally {
      await limited.stop();
    }
  });

  it('after 30 wrong tokens from one address, refuses that address (429) even with a good token; another address still gets in', async () => {
    const from = { 'x-forwarded-for': '203.0.113.77' };
    for (let i = 0; i < 30; i++) {
      const r = await api('GET', '/lists', { token: `lkt_${crypto.randomBytes(32).toString('base64url')}`, headers: from });
      expect(r.status).toBe(401);
    }
    const blocked = await api('GET', '/lists', { token: tokens.read, headers: from });
    expect(blocked.status).toBe(429);
    expect(blocked.headers.get('retry-after')).toBe('900');
    expect((await api('GET', '/lists', { token: tokens.read, headers: { 'x-forwarded-for': '203.0.113.78' } })).status).toBe(200);
  });
});

describe('the panel\'s token page', () => {
  let admin: WebClient;
  beforeAll(async () => {
    admin = await loggedIn(db, web.url, 'root@example.org', { siteAdmin: true });
  });

  it('is for site administrators only', async () => {
    const owner = await loggedIn(db, web.url, 'owner@example.org');
    expect((await owner.get('/admin/tokens')).status).toBe(403);
    expect((await owner.post('/admin/tokens', { name: 'sneaky', scope: 'admin' })).status).toBe(403);
    expect((await fetch(`${web.url}/admin/tokens`, { redirect: 'manual' })).status).toBe(303);
    expect((await db.pool.query(`select 1 from api_tokens where name = 'sneaky'`)).rowCount).toBe(0);
  });

  it('creates a token shown once (CSRF-checked), lists it without its secret, and revokes it: its next call is 401', async () => {
    expect((await admin.post('/admin/tokens', { name: 'no-csrf', scope: 'read' }, { csrf: false })).status).toBe(403);
    const created = await admin.post('/admin/tokens', { name: 'panel-made', scope: 'moderate' });
    expect(created.status).toBe(200);
    expect(created.headers.get('cache-control')).toBe('no-store');
    const token = /id="new-token">(lkt_[A-Za-z0-9_-]{43})</.exec(created.text)![1];
    expect((await api('POST', '/lists/mod/rules', { token, json: { pattern: 'panel@example.org', kind: 'ban' } })).status).toBe(200);
    const listing = await admin.get('/admin/tokens');
    expect(listing.text).toContain('panel-made');
    expect(listing.text).not.toContain(token);
    const { rows } = await db.pool.query(`select id from api_tokens where name = 'panel-made'`);
    const revoke = await admin.post(`/admin/tokens/${rows[0].id}/revoke`);
    expect(revoke.status).toBe(303);
    expect((await api('GET', '/lists', { token })).status).toBe(401);
    const audit = await db.pool.query(`select actor, action from audit_log where target = $1 order by id`, [`api:panel-made#${rows[0].id}`]);
    expect(audit.rows).toEqual([{ actor: 'root@example.org', action: 'token.create' }, { actor: 'root@example.org', action: 'token.revoke' }]);
    const badScope = await admin.post('/admin/tokens', { name: 'x', scope: 'root' });
    expect(badScope.status).toBe(400);
  });

  it('makes a token only in a session of a recent login: a stolen old cookie cannot mint one that outlives it', async () => {
    const stale = await loggedIn(db, web.url, 'stale.admin@example.org', { siteAdmin: true });
    await db.pool.query(`update sessions set created_at = now() - interval '16 minutes' where account_id = (select id from accounts where email = 'stale.admin@example.org')`);
    const refused = await stale.post('/admin/tokens', { name: 'thief-kept', scope: 'admin' });
    expect(refused.status).toBe(303);
    expect(refused.location).toBe('/account/reauthenticate?next=%2Fadmin%2Ftokens');
    expect(refused.text).not.toMatch(/lkt_/);
    expect((await db.pool.query(`select 1 from api_tokens where name = 'thief-kept'`)).rowCount).toBe(0);
    // Listing and revoking stay open to it: they keep nothing.
    expect((await stale.get('/admin/tokens')).status).toBe(200);
  });
});

describe('whose tokens work', () => {
  const accountId = async (email: string) => (await db.pool.query<{ id: number }>('select id from accounts where email = $1', [email])).rows[0].id;
  const panelToken = async (c: WebClient, name: string, days = '') =>
    /id="new-token">(lkt_[A-Za-z0-9_-]{43})</.exec((await c.post('/admin/tokens', { name, scope: 'read', days })).text)![1];
  const stateOf = async (name: string) => (JSON.parse((await cli(['token', 'ls', '--json'], env)).stdout) as { name: string; state: string }[]).find((t) => t.name === name)?.state;

  it("a token made in the panel works only while its maker is a site administrator, and not once the account is gone", async () => {
    const maker = await loggedIn(db, web.url, 'maker@example.org', { siteAdmin: true });
    const token = await panelToken(maker, 'maker-made');
    expect((await api('GET', '/lists', { token })).status).toBe(200);
    const { rows } = await db.pool.query(`select created_by, created_by_account, expires_at from api_tokens where name = 'maker-made'`);
    expect(rows).toEqual([{ created_by: 'maker@example.org', created_by_account: await accountId('maker@example.org'), expires_at: null }]);

    // The rights taken away as docs/single-sign-on.md says: the token stops at its next request.
    await db.pool.query(`update accounts set is_site_admin = false, site_admin_via = null where email = 'maker@example.org'`);
    const refused = await api('GET', '/lists', { token });
    expect(refused.status).toBe(401);
    expect(refused.body).toEqual({ error: 'invalid_token', detail: expect.stringContaining('the site administrator who made it no longer is one') });
    expect(await stateOf('maker-made')).toBe('maker_not_admin');
    const root = await loggedIn(db, web.url, 'root@example.org', { siteAdmin: true });
    expect((await root.get('/admin/tokens')).text).toContain('its maker is no longer a site administrator');
    // The operator's token, made on the command line, is no account's.
    expect((await api('GET', '/lists', { token: tokens.admin })).status).toBe(200);
    // Rights given back, it works again; the account deleted, never more.
    await db.pool.query(`update accounts set is_site_admin = true where email = 'maker@example.org'`);
    expect((await api('GET', '/lists', { token })).status).toBe(200);
    await db.pool.query(`delete from accounts where email = 'maker@example.org'`);
    expect((await api('GET', '/lists', { token })).status).toBe(401);
    expect(await stateOf('maker-made')).toBe('maker_not_admin');
  });

  it('a token goes with its maker when accounts are merged, and a token the previous release makes in its panel gets its maker too', async () => {
    const dropped = await loggedIn(db, web.url, 'merged.away@example.org', { siteAdmin: true });
    const token = await panelToken(dropped, 'merged-maker');
    await loggedIn(db, web.url, 'merged.kept@example.org');
    const [keepId, dropId] = [await accountId('merged.kept@example.org'), await accountId('merged.away@example.org')];
    await withTransaction(db.pool, (tx) => mergeAccount(tx, keepId, dropId));
    expect((await api('GET', '/lists', { token })).status).toBe(200);
    expect((await db.pool.query(`select created_by_account from api_tokens where name = 'merged-maker'`)).rows).toEqual([{ created_by_account: keepId }]);

    // A rolling upgrade: the previous release's panel inserts without created_by_account (sql/0083's trigger).
    await db.pool.query(`insert into api_tokens (name, scope, token_hash, created_by) values ('old-panel', 'read', 'x', 'merged.kept@example.org')`);
    expect((await db.pool.query(`select created_by_account from api_tokens where name = 'old-panel'`)).rows).toEqual([{ created_by_account: keepId }]);
  });

  it('a token made with days lapses after them, on the command line and in the panel', async () => {
    const made = await cli(['token', 'create', '--scope', 'read', '--name', 'lapsing', '--days', '2', '--json'], env);
    expect(made.code, made.stderr).toBe(0);
    const created = JSON.parse(made.stdout);
    expect(Math.abs(Date.parse(created.expires_at) - (Date.now() + 2 * 86_400_000))).toBeLessThan(60_000);
    expect((await api('GET', '/lists', { token: created.token })).status).toBe(200);
    expect(await stateOf('lapsing')).toBe('live');
    await db.pool.query(`update api_tokens set expires_at = now() - interval '1 second' where id = $1`, [created.id]);
    expect((await api('GET', '/lists', { token: created.token })).status).toBe(401);
    expect(await stateOf('lapsing')).toBe('expired');
    for (const days of ['0', '1.5', '1e3', '100000', 'soon']) {
      const bad = await cli(['token', 'create', '--scope', 'read', '--days', days], env);
      expect(bad.code, days).toBe(1);
      expect(bad.stderr, days).toContain('days must be a whole number from 1 to 99999');
    }
    const root = await loggedIn(db, web.url, 'root@example.org', { siteAdmin: true });
    await panelToken(root, 'panel-lapsing', '30');
    const { rows } = await db.pool.query(`select expires_at from api_tokens where name = 'panel-lapsing'`);
    expect(Math.abs(rows[0].expires_at.getTime() - (Date.now() + 30 * 86_400_000))).toBeLessThan(60_000);
    const refused = await root.post('/admin/tokens', { name: 'panel-bad-days', scope: 'read', days: '-3' });
    expect(refused.status).toBe(400);
    expect(refused.text).toContain('days must be a whole number from 1 to 99999');
    expect((await db.pool.query(`select 1 from api_tokens where name = 'panel-bad-days'`)).rowCount).toBe(0);
  });
});

describe('the OpenAPI document', () => {
  it('has had every one of its operations exercised by the responses above', () => {
    const all = Object.entries(checker.doc.paths).flatMap(([template, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${template}`));
    expect(all.filter((op) => !checker.exercised.has(op))).toEqual([]);
  });
});
