/*
 * Two moderators working the same queue in the panel at once (real HTTP with CSRF tokens, posts
 * held over real SMTP): the same post approved twice, approved while a bulk action discards it.
 * One decision wins; the post is distributed exactly when that decision is an approval, once; the
 * audit log names only the winner; the loser is told the post was already handled.
 */

import { afterAll, beforeAll, expect, it } from 'vitest';
import { createList } from '../src/db/lists.ts';
import { addListRole } from '../src/db/list-admin.ts';
import { addMember } from '../src/db/members.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { loggedIn, type Reply, type WebClient } from './helpers/browser.ts';
import { outboxRowsOf } from './helpers/outbox-rows.ts';
import { message, sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';

let db: TestDatabase;
let web: RunningWeb;
let smtp: RunningIngest;
let ann: WebClient;
let ben: WebClient;
const H = '/admin/lists/queue@lists.example.org/held';
const MEMBERS = ['one@example.net', 'two@example.net'];

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db);
  smtp = await startIngest(db.pool);
  const list = await createList(db.pool, { address: 'queue@lists.example.org', name: 'Queue', description: '', postPolicy: 'moderated', subscribePolicy: 'confirm', archive: 'public', owners: ['owner@example.org'] });
  for (const m of ['ann@example.org', 'ben@example.org']) await addListRole(db.pool, list.id, m, 'moderator');
  for (const m of MEMBERS) await addMember(db.pool, list.id, m, 'each');
  ann = await loggedIn(db, web.url, 'ann@example.org');
  ben = await loggedIn(db, web.url, 'ben@example.org');
});

afterAll(async () => {
  await smtp?.stop();
  await web?.stop();
  await db?.drop();
});

let posts = 0;
/** A post held from `from`; its held id and Message-ID. */
async function hold(from = 'stranger@elsewhere.example'): Promise<{ id: number; messageId: string }> {
  const messageId = `held-${++posts}@elsewhere.example`;
  const sent = await sendRaw(smtp.port, { from, to: ['queue@lists.example.org'] }, message({ id: messageId, from, to: 'queue@lists.example.org' }));
  expect(sent.ok, sent.response).toBe(true);
  const { rows } = await db.pool.query<{ id: number }>('select id from held_messages where message_id = $1', [messageId]);
  return { id: rows[0].id, messageId };
}

/** What became of a held post: its state, who decided, its copies and its audit entries. */
async function outcome(messageId: string) {
  const held = (await db.pool.query('select state, decided_by from held_messages where message_id = $1', [messageId])).rows[0];
  const copies = (await outboxRowsOf(db.pool, messageId)).map((r) => r.recipient);
  const audit = (await db.pool.query(`select actor, action from audit_log where target = $1 order by id`, [messageId])).rows;
  return { ...held, copies, audit };
}

/** The message the moderator sees on the page the panel sent them back to. */
async function flashAfter(client: WebClient, reply: Reply): Promise<string> {
  expect(reply.status).toBe(303);
  const page = await client.get(reply.location!);
  return /<[^>]+class="(?:flash|error)"[^>]*>([\s\S]*?)<\//.exec(page.text)?.[1] ?? page.text;
}

it('the same held post approved by two moderators at once is approved and distributed once; the second is told', async () => {
  for (let round = 0; round < 4; round++) {
    const { id, messageId } = await hold();
    const replies = await Promise.all([ann.post(H, { ids: String(id), action: 'approve' }), ben.post(H, { ids: String(id), action: 'approve' })]);
    const said = [await flashAfter(ann, replies[0]), await flashAfter(ben, replies[1])];
    const got = await outcome(messageId);
    expect(got.state).toBe('approved');
    expect(got.copies).toEqual(MEMBERS);
    expect(got.audit).toEqual([{ actor: got.decided_by, action: 'held.approve' }]);
    const loser = got.decided_by === 'ann@example.org' ? 1 : 0;
    expect(said[1 - loser]).toContain('1 message approved');
    expect(said[loser]).toContain(`Already handled or not found: #${id}`);
  }
});

it('a held post approved while another moderator discards the page it is on ("select all") is either approved or discarded, never both', async () => {
  for (let round = 0; round < 4; round++) {
    const { id, messageId } = await hold();
    const other = await hold();
    const replies = await Promise.all([
      ann.post(H, { ids: String(id), action: 'approve' }),
      ben.post(H, { all: '1', page_ids: [String(id), String(other.id)], action: 'discard', confirm: '1' }),
    ]);
    for (const r of replies) expect(r.status).toBe(303);
    const got = await outcome(messageId);
    expect(got.copies).toEqual(got.state === 'approved' ? MEMBERS : []);
    expect(got.audit).toEqual([got.state === 'approved' ? { actor: 'ann@example.org', action: 'held.approve' } : { actor: 'ben@example.org', action: 'held.discard' }]);
    expect((await outcome(other.messageId)).state).toBe('discarded');
  }
});

it('a held post approved while another moderator bans its sender\'s domain and discards all held from it is either approved or discarded, never both', async () => {
  for (let round = 0; round < 4; round++) {
    const from = `flood-${round}@flood${round}.example`;
    const { id, messageId } = await hold(from);
    const replies = await Promise.all([
      ann.post(H, { ids: String(id), action: 'approve' }),
      ben.post(`${H}/sender`, { sender: `@flood${round}.example`, action: 'discard-ban-sender', confirm: '1' }),
    ]);
    for (const r of replies) expect(r.status).toBe(303);
    const got = await outcome(messageId);
    expect(got.copies).toEqual(got.state === 'approved' ? MEMBERS : []);
    expect(got.audit).toEqual([got.state === 'approved' ? { actor: 'ann@example.org', action: 'held.approve' } : { actor: 'ben@example.org', action: 'held.discard-ban' }]);
  }
});
