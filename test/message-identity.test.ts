import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importMbox } from '../src/core/archive-import.ts';
import { addListRole } from '../src/db/list-admin.ts';
import { createList, type ListRow } from '../src/db/lists.ts';
import type { ArchivePolicy } from '../src/list-policies.ts';
import { addMember } from '../src/db/members.ts';
import type { DeliveryWorker } from '../src/delivery/worker.ts';
import { listHeld, moderate } from '../src/core/hold.ts';
import { mboxrdEntry } from '../src/mail/mbox.ts';
import { loggedIn, WebClient } from './helpers/browser.ts';
import { drained, startCaptureRelay, startWorker, workerConfig, type CaptureRelay } from './helpers/capture-relay.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { message, sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';
import { config } from '../src/config.ts';

/**
 * A Message-ID is chosen by the sender: it identifies, it does not authorise (issue "Trust", 1).
 * Every test here failed on the code before sql/0013, where any post reusing an archived
 * Message-ID was linked to the archived message whatever its content.
 */
let db: TestDatabase;
let relay: CaptureRelay;
let smtp: RunningIngest;
let worker: DeliveryWorker;
let web: RunningWeb;
let anonymous: WebClient;
let admin: WebClient;
const lists: Record<string, ListRow> = {};

async function newList(local: string, postPolicy: 'open' | 'members', archive: ArchivePolicy, members: string[]) {
  const list = await createList(db.pool, { address: `${local}@lists.example.org`, name: local, description: '', postPolicy, subscribePolicy: 'confirm', archive, owners: [] });
  for (const m of members) await addMember(db.pool, list.id, m, 'each');
  lists[local] = list;
  return list;
}

beforeAll(async () => {
  db = await testDatabase();
  relay = await startCaptureRelay();
  smtp = await startIngest(db.pool);
  web = await startWeb(db);
  worker = await startWorker(db, workerConfig(relay));
  await newList('secret', 'members', 'private', ['insider@corp.example', 'ann@corp.example']);
  await newList('pub', 'open', 'public', ['mallory@evil.example', 'bob@public.example']);
  await newList('team', 'members', 'public', ['ann@corp.example', 'ben@corp.example']);
  await newList('open', 'open', 'public', ['carl@public.example']);
  await newList('a', 'open', 'public', ['reader-a@public.example']);
  await newList('b', 'open', 'public', ['reader-b@public.example']);
  await addListRole(db.pool, lists.a.id, 'owner-a@example.org', 'owner');
  await addListRole(db.pool, lists.b.id, 'owner-b@example.org', 'owner');
  anonymous = new WebClient(web.url);
  admin = await loggedIn(db, web.url, 'root@example.org', { siteAdmin: true });
});

afterAll(async () => {
  await worker?.stop();
  await web?.stop();
  await smtp?.stop();
  await relay?.stop();
  await db?.drop();
});

const post = (from: string, to: string[], raw: string | Buffer) => sendRaw(smtp.port, { from, to: to.map((l) => `${l}@lists.example.org`) }, raw);
const rows = async (messageId: string) =>
  (await db.pool.query(
    `select m.id, m.subject, m.body, array_agg(l.local_part order by l.local_part) as lists
       from messages m join list_messages lm on lm.message_id = m.id join lists l on l.id = lm.list_id
      where m.message_id = $1 group by m.id order by m.id`, [messageId])).rows;
const copiesTo = (to: string, messageId: string) => relay.messages.filter((m) => m.to === to && m.raw.toString('latin1').includes(`<${messageId}>`));

describe('a Message-ID reused by someone else', () => {
  it("gives a stranger's post on a public list its own message, and shows nobody the private one through it", async () => {
    expect((await post('insider@corp.example', ['secret'], message({ id: 'merger@corp.example', from: 'insider@corp.example', subject: 'Board minutes', body: 'The merger with Initech is on.' }))).ok).toBe(true);
    const res = await post('mallory@evil.example', ['pub'], message({ id: 'merger@corp.example', from: 'mallory@evil.example', subject: 'Hello', body: 'Just saying hello.' }));
    expect(res.ok).toBe(true);
    await drained(db);

    expect((await rows('merger@corp.example')).map((r) => [r.subject, r.lists])).toEqual([['Board minutes', ['secret']], ['Hello', ['pub']]]);
    for (const url of ['/message-id/merger@corp.example', '/message-id/raw/merger@corp.example', '/message-id/merger@corp.example?list=secret']) {
      const page = await anonymous.get(url);
      expect(page.status, url).toBe(200);
      expect(page.text, url).toContain('Just saying hello');
      expect(page.text, url).not.toContain('merger with Initech');
    }
    const pubPage = (await anonymous.get('/lists/pub/')).text;
    const threadId = /href="\/lists\/pub\/thread\/(\d+)"/.exec(pubPage)![1];
    for (const url of [`/lists/pub/thread/${threadId}`, `/lists/pub/thread/${threadId}.mbox`, '/lists/pub/2026-11.mbox', '/lists/pub/feed.atom']) {
      expect((await anonymous.get(url)).text, url).not.toContain('Initech');
    }
    expect((await anonymous.get('/search?q=Initech')).text).toContain('No messages found');
    // The public list's members get the stranger's text, never the private post.
    expect(copiesTo('mallory@evil.example', 'merger@corp.example').map((m) => m.raw.toString())).toEqual([expect.stringContaining('Just saying hello')]);
    expect(relay.messages.filter((m) => !m.to.endsWith('@corp.example') && m.raw.toString().includes('Initech'))).toEqual([]);
    expect(copiesTo('insider@corp.example', 'merger@corp.example').map((m) => m.raw.toString())).toEqual([expect.stringContaining('Initech')]);
  });

  it('offers a reader of both lists the choice, and ?list= picks one', async () => {
    const choice = await admin.get('/message-id/merger@corp.example');
    expect(choice.status).toBe(300);
    expect(choice.text).toContain('Several messages have this Message-ID');
    expect(choice.text).toContain('href="/message-id/merger@corp.example?list=secret"');
    expect(choice.text).toContain('href="/message-id/merger@corp.example?list=pub"');
    expect(choice.text).toContain('Board minutes');
    expect(choice.text).toContain('Hello');
    expect((await admin.get('/message-id/raw/merger@corp.example')).status).toBe(300);
    const secret = await admin.get('/message-id/merger@corp.example?list=secret');
    expect(secret.status).toBe(200);
    expect(secret.text).toContain('merger with Initech');
    // the page's own links name the list, so they lead to this message, not to the choice
    expect(secret.text).toContain('href="/message-id/raw/merger@corp.example?list=secret"');
    expect((await admin.get('/message-id/raw/merger@corp.example?list=secret')).text).toContain('merger with Initech');
    expect((await admin.get('/message-id/raw/merger@corp.example?list=pub')).text).toContain('Just saying hello');
  });

  it("threads a reply by this list's own message when a Message-ID names several", async () => {
    expect((await post('bob@public.example', ['pub'], message({ id: 'reply-1@public.example', from: 'bob@public.example', subject: 'Re: Hello', headers: { 'In-Reply-To': '<merger@corp.example>' } }))).ok).toBe(true);
    const { rows: [r] } = await db.pool.query(
      `select p.subject from messages c join messages p on p.id = c.parent_id where c.message_id = 'reply-1@public.example'`);
    expect(r.subject).toBe('Hello');
  });

  it('refuses a second, different message under a Message-ID the list already has, and keeps it aside', async () => {
    const res = await post('mallory@evil.example', ['pub'], message({ id: 'merger@corp.example', from: 'mallory@evil.example', subject: 'Hello again', body: 'Different words.' }));
    expect(res.ok).toBe(false);
    expect(res.responseCode).toBe(554);
    expect((await rows('merger@corp.example')).map((r) => r.subject)).toEqual(['Board minutes', 'Hello']);
    const kept = await db.pool.query(`select reason from ingest_errors where message_id = 'merger@corp.example'`);
    expect(kept.rows.map((r) => r.reason)).toEqual([expect.stringContaining('already names a different message in the archive of the list pub@lists.example.org')]);
  });

  it('links a cross-post delivered in two transactions once, however their trace headers differ', async () => {
    const body = message({ id: 'cross@example.org', subject: 'To both', body: 'Same words for both lists.' });
    const viaA = `Received: from mx1.example.org by lists.example.org; Mon, 02 Nov 2026 10:00:01 +0000\r\nReturn-Path: <alice@example.org>\r\n${body}`;
    const viaB = `Received: from mx2.example.org by lists.example.org; Mon, 02 Nov 2026 10:00:09 +0000\r\n  (folded trace line)\r\nDelivered-To: b@lists.example.org\r\n${body}`;
    expect((await post('alice@example.org', ['a'], viaA)).ok).toBe(true);
    expect((await post('alice@example.org', ['b'], viaB)).ok).toBe(true);
    expect((await rows('cross@example.org')).map((r) => r.lists)).toEqual([['a', 'b']]);
    await drained(db);
    expect(copiesTo('reader-b@public.example', 'cross@example.org')).toHaveLength(1);
  });
});

describe('a held post', () => {
  it('goes out exactly as it was held, whatever was posted elsewhere under its Message-ID', async () => {
    const harmless = message({ id: 'swap@elsewhere.example', from: 'stranger@elsewhere.example', subject: 'A question', body: 'Is the meeting on Tuesday?' });
    expect((await post('stranger@elsewhere.example', ['team'], harmless)).ok).toBe(true);
    const [held] = (await listHeld(db.pool, lists.team.id)).filter((h) => h.message_id === 'swap@elsewhere.example');
    expect(held).toBeDefined();
    const phishing = message({ id: 'swap@elsewhere.example', from: 'stranger@elsewhere.example', subject: 'A question', body: 'Reset your password at http://evil.example/' });
    expect((await post('stranger@elsewhere.example', ['open'], phishing)).ok).toBe(true);

    await moderate(db.pool, held.id, 'approve', { actor: 'mod@corp.example', settings: config() });
    await drained(db);
    for (const member of ['ann@corp.example', 'ben@corp.example']) {
      const got = copiesTo(member, 'swap@elsewhere.example');
      expect(got, member).toHaveLength(1);
      const text = got[0].raw.toString();
      expect(text).toContain('Is the meeting on Tuesday?');
      expect(text).not.toContain('evil.example/');
      // the held bytes, byte for byte, after the list's own header lines
      expect(got[0].raw.includes(Buffer.from(harmless.slice(harmless.indexOf('\r\n\r\n'))))).toBe(true);
    }
    expect((await rows('swap@elsewhere.example')).map((r) => [r.lists, r.body.trim()])).toEqual([
      [['open'], 'Reset your password at http://evil.example/'],
      [['team'], 'Is the meeting on Tuesday?'],
    ]);
  });

  it('cannot be approved once the list has another message under its Message-ID, and stays held', async () => {
    expect((await post('stranger@elsewhere.example', ['team'], message({ id: 'late@elsewhere.example', from: 'stranger@elsewhere.example', subject: 'First' }))).ok).toBe(true);
    const [held] = (await listHeld(db.pool, lists.team.id)).filter((h) => h.message_id === 'late@elsewhere.example');
    // a member's post takes the Message-ID in the list meanwhile
    expect((await post('ann@corp.example', ['team'], message({ id: 'late@elsewhere.example', from: 'ann@corp.example', subject: 'Second' }))).ok).toBe(true);
    await expect(moderate(db.pool, held.id, 'approve', { actor: 'mod@corp.example', settings: config() })).rejects.toThrow(/already has a different message with its Message-ID/);
    expect((await listHeld(db.pool, lists.team.id)).map((h) => h.id)).toContain(held.id);
  });
});

describe('hiding', () => {
  it("is per list: an owner's decision never changes what another list's readers see", async () => {
    expect((await post('alice@example.org', ['a', 'b'], message({ id: 'both@example.org', subject: 'Cross-posted news', body: 'News for everyone.' }))).ok).toBe(true);
    const ownerA = await loggedIn(db, web.url, 'owner-a@example.org');
    const ownerB = await loggedIn(db, web.url, 'owner-b@example.org');
    expect((await ownerA.post('/admin/lists/a@lists.example.org/messages/hide', { message_id: 'both@example.org', reason: 'legal', note: 'takedown' })).status).toBe(303);

    expect((await anonymous.get('/lists/a/2026-11/')).text).not.toContain('Cross-posted news');
    expect((await anonymous.get('/lists/b/2026-11/')).text).toContain('Cross-posted news');
    const permalink = await anonymous.get('/message-id/both@example.org?list=a');
    expect(permalink.status).toBe(200); // still readable through list b
    expect(permalink.text).toContain('News for everyone.');
    expect(permalink.text).toContain('href="/lists/b/"');

    // The owner of b cannot undo a's decision, through b or through a.
    expect((await ownerB.post('/admin/lists/b@lists.example.org/messages/unhide', { message_id: 'both@example.org' })).status).toBe(303);
    expect((await ownerB.post('/admin/lists/a@lists.example.org/messages/unhide', { message_id: 'both@example.org' })).status).toBe(403);
    const state = await db.pool.query(
      `select l.local_part, lm.hidden_reason from list_messages lm join lists l on l.id = lm.list_id join messages m on m.id = lm.message_id
        where m.message_id = 'both@example.org' order by 1`);
    expect(state.rows).toEqual([{ local_part: 'a', hidden_reason: 'legal: takedown' }, { local_part: 'b', hidden_reason: null }]);

    // Hidden in both lists, the permalink says why.
    expect((await ownerB.post('/admin/lists/b@lists.example.org/messages/hide', { message_id: 'both@example.org', reason: 'spam' })).status).toBe(303);
    const gone = await anonymous.get('/message-id/both@example.org');
    expect(gone.status).toBe(410);
    expect(gone.text).not.toContain('News for everyone.');
  });
});

describe('import', () => {
  it('stores a reused Message-ID from an mbox as its own message and links only the same message', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lk-identity-'));
    const file = path.join(tmp, 'pub.mbox');
    const date = new Date('2026-11-05T10:00:00Z');
    fs.writeFileSync(file, Buffer.concat([
      mboxrdEntry(Buffer.from(message({ id: 'merger@corp.example', subject: 'Imported guess', body: 'Not the minutes.' })), 'x@example.org', date),
      mboxrdEntry(Buffer.from(message({ id: 'cross@example.org', subject: 'To both', body: 'Same words for both lists.' })), 'x@example.org', date),
    ]));
    try {
      const state = await importMbox(db, lists.open, file);
      expect(state.added).toBe(2);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
    expect((await rows('merger@corp.example')).map((r) => [r.subject, r.lists])).toEqual([
      ['Board minutes', ['secret']], ['Hello', ['pub']], ['Imported guess', ['open']],
    ]);
    expect((await rows('cross@example.org')).map((r) => r.lists)).toEqual([['a', 'b', 'open']]);
  });
});
