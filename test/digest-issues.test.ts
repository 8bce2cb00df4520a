import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendDigest, sendDueDigest } from '../src/core/digests.ts';
import { createList, updateDeliverySettings } from '../src/db/lists.ts';
import { addMember, setDigestFormat } from '../src/db/members.ts';
import { acceptIntoLists, hideMessage } from '../src/db/messages.ts';
import { parse } from '../src/mail/parse.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { message } from './helpers/smtp.ts';

/**
 * How waiting posts are cut into digest issues (src/core/digests.ts, takeDigestItems): a backlog
 * of large posts goes out in issues of bounded size, each post once, in order.
 */

let db: TestDatabase;
let lists = 0;

beforeAll(async () => {
  db = await testDatabase();
});

afterAll(async () => {
  await db?.drop();
});

/** A list with one MIME and one plain digest reader. */
async function digestList(threshold: number) {
  const local = `dig-${++lists}`;
  const list = await createList(db.pool, { address: `${local}@lists.example.org`, name: local, description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: ['owner@example.org'] });
  await addMember(db.pool, list.id, `mime@${local}.example`, 'digest');
  await addMember(db.pool, list.id, `plain@${local}.example`, 'digest');
  await setDigestFormat(db.pool, list.id, `plain@${local}.example`, 'plain');
  await updateDeliverySettings(db.pool, list.id, { digest_size_threshold: threshold });
  return { list, local };
}

/** Posts `sizes.length` posts of about those sizes, a minute apart; returns their Message-IDs in order. */
async function post(list: { id: number; address: string }, sizes: number[]): Promise<string[]> {
  const ids: string[] = [];
  for (const [i, size] of sizes.entries()) {
    const id = `post-${i + 1}-${list.id}@example.org`;
    const line = `${String(i + 1).padStart(4, '0')} ${'x'.repeat(64)}\n`;
    const raw = Buffer.from(message({ id, to: list.address, subject: `Post ${i + 1}`, date: new Date(Date.UTC(2026, 10, 2, 10, i)).toUTCString(), body: line.repeat(Math.ceil(size / line.length)) }));
    await acceptIntoLists(db.pool, [{ list, raw, message: await parse(raw) }]);
    ids.push(id);
  }
  return ids;
}

/** The digests queued for a reader, oldest first. */
async function digestsFor(email: string): Promise<Buffer[]> {
  const { rows } = await db.pool.query<{ raw: Buffer }>(
    `select m.raw from outbox o join outbound_mail m on m.id = o.mail_id where o.kind = 'digest' and o.recipient = $1 order by o.id`, [email]);
  return rows.map((r) => r.raw);
}

/** The posts' Message-IDs in one digest, in the order it carries them. */
const postsIn = (raw: Buffer) => [...raw.toString('latin1').matchAll(/^Message-ID: <(post-[^>]+)>/gm)].map((m) => m[1]);

const subjectOf = (raw: Buffer) => /^Subject: (.*)$/m.exec(raw.toString('latin1'))![1];

async function waiting(listId: number): Promise<number> {
  return (await db.pool.query('select count(*)::int as n from digest_items where list_id = $1', [listId])).rows[0].n;
}

describe('digest issues', () => {
  it('sends a backlog of large posts in issues under the byte cap, every post once and in order', async () => {
    const { list, local } = await digestList(100 * 1024 * 1024);
    const ids = await post(list, Array(24).fill(40_000));
    const cap = 150_000;
    expect(await sendDigest(db.pool, list.id, 'https://lists.example.org', cap)).toBe(true);
    for (const reader of ['mime', 'plain']) {
      const digests = await digestsFor(`${reader}@${local}.example`);
      // Three posts of 40 KB fit under 150 KB, a fourth would not.
      expect(digests.map((d) => postsIn(d).length), reader).toEqual(Array(8).fill(3));
      expect(digests.flatMap(postsIn), reader).toEqual(ids);
      expect(digests.map(subjectOf), reader).toEqual(digests.map((_, i) => `${local} Digest, Vol 1, Issue ${i + 1}`));
      // The issue's own headers and table of contents are small beside its posts.
      for (const d of digests) expect(d.length, reader).toBeLessThan(cap + 4096);
    }
    expect(await waiting(list.id)).toBe(0);
  });

  it('ends an issue with the post that reaches the size threshold, and sends the rest in the next issue', async () => {
    const { list, local } = await digestList(100_000);
    const ids = await post(list, [40_000, 40_000, 40_000, 40_000, 40_000]);
    expect(await sendDigest(db.pool, list.id, 'https://lists.example.org')).toBe(true);
    for (const reader of ['mime', 'plain']) {
      expect((await digestsFor(`${reader}@${local}.example`)).map(postsIn), reader).toEqual([ids.slice(0, 3), ids.slice(3)]);
    }
    expect(await waiting(list.id)).toBe(0);
  });

  it('sends a post larger than the cap alone in its issue, whole', async () => {
    const { list, local } = await digestList(100 * 1024 * 1024);
    const ids = await post(list, [1_000, 120_000, 1_000]);
    expect(await sendDigest(db.pool, list.id, 'https://lists.example.org', 50_000)).toBe(true);
    const digests = await digestsFor(`mime@${local}.example`);
    expect(digests.map(postsIn)).toEqual([[ids[0]], [ids[1]], [ids[2]]]);
    expect(digests[1].length).toBeGreaterThan(120_000);
    expect(await waiting(list.id)).toBe(0);
  });

  it('sends a digest found due only if it still is once the list is locked: not the posts that came after another worker sent it', async () => {
    const { list, local } = await digestList(5_000);
    await post(list, [2_000, 2_000, 2_000]);
    // Two workers found it due; the first sends everything.
    expect(await sendDueDigest(db.pool, list.id, 'https://lists.example.org')).toBe(true);
    expect(await digestsFor(`mime@${local}.example`)).toHaveLength(1);
    // A post arrives before the second worker takes the lock: 1 KB of 5, waiting its day.
    const late = `late-${list.id}@example.org`;
    const raw = Buffer.from(message({ id: late, to: list.address, subject: 'Late', body: 'x\n'.repeat(500) }));
    await acceptIntoLists(db.pool, [{ list, raw, message: await parse(raw) }]);
    expect(await sendDueDigest(db.pool, list.id, 'https://lists.example.org')).toBe(false);
    expect(await digestsFor(`mime@${local}.example`)).toHaveLength(1);
    expect(await waiting(list.id)).toBe(1);
  });

  it('leaves out a post hidden while it waited, and does not keep it waiting', async () => {
    const { list, local } = await digestList(100 * 1024 * 1024);
    const ids = await post(list, [1_000, 1_000, 1_000]);
    expect(await hideMessage(db.pool, list.id, ids[0], 'spam', 'owner@example.org')).toBe(true);
    expect(await sendDigest(db.pool, list.id, 'https://lists.example.org')).toBe(true);
    expect((await digestsFor(`mime@${local}.example`)).map(postsIn)).toEqual([ids.slice(1)]);
    expect(await waiting(list.id)).toBe(0);
  });

  it('carries each post into the MIME digest with the fields a reader needs, not its trace, signatures or X- fields', async () => {
    const { list, local } = await digestList(100 * 1024 * 1024);
    const raw = Buffer.from(message({
      id: `post-traced-${list.id}@example.org`, to: list.address, subject: 'Traced', body: 'Body as sent.\n',
      headers: {
        Received: 'from home.dsl.example (home.dsl.example [203.0.113.9]) by mail.example.org; Mon, 02 Nov 2026 10:00:00 +0000',
        'DKIM-Signature': 'v=1; a=rsa-sha256; d=example.org; s=s1; h=from:subject; bh=abc=; b=def=',
        'X-Originating-IP': '[203.0.113.9]',
        'In-Reply-To': '<earlier@example.org>',
      },
    }));
    await acceptIntoLists(db.pool, [{ list, raw, message: await parse(raw) }]);
    expect(await sendDigest(db.pool, list.id, 'https://lists.example.org')).toBe(true);
    const [digest] = await digestsFor(`mime@${local}.example`);
    const text = digest.toString('latin1');
    expect(postsIn(digest)).toEqual([`post-traced-${list.id}@example.org`]);
    expect(text).toMatch(/^In-Reply-To: <earlier@example\.org>\r$/m);
    expect(text).toContain('\r\n\r\nBody as sent.\r\n');
    for (const gone of ['Received:', 'DKIM-Signature:', 'X-Originating-IP:', '203.0.113.9']) expect(text).not.toContain(gone);
  });
});
