import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importBatch } from '../src/db/archive-import.ts';
import type { ListRow } from '../src/db/lists.ts';
import { parse } from '../src/mail/parse.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { archive, mail, newList, type Mail } from './fixtures/archive/seed.ts';

/*
 * Threads stop at what their readers may read (sql/0086): a message takes as its parent only a
 * message of its own list or of a public list, and adopts a message that waited for it only when
 * that one is in its list or its own list is public. Through archive_message() (live mail) and
 * import_messages() (listkeeper import), on a real PostgreSQL.
 */

let db: TestDatabase;
let pub: ListRow;
let pub2: ListRow;
let hush: ListRow;
let hush2: ListRow;

beforeAll(async () => {
  db = await testDatabase();
  pub = await newList(db.pool, 'open@lists.example.org');
  pub2 = await newList(db.pool, 'open2@lists.example.org');
  hush = await newList(db.pool, 'hush@lists.example.org', 'private');
  hush2 = await newList(db.pool, 'hush2@lists.example.org', 'members');
});
afterAll(async () => {
  await db?.drop();
});

const row = async (messageId: string) => (await db.pool.query<{ id: string; thread_id: string; parent_id: string | null }>(
  'select id, thread_id, parent_id from messages where message_id = $1', [messageId])).rows[0];

/** Stores one message the way `listkeeper import` does (import_messages), as a batch of one. */
async function imported(list: ListRow, m: Mail) {
  const raw = mail(m);
  return importBatch(db.pool, list.id, [{ raw, message: await parse(raw) }]);
}

describe('a reply in a public list to a message of a private one', () => {
  it('starts a thread of its own, as a reply to an unknown Message-ID does: the private archive is not told', async () => {
    await archive(db.pool, hush, mail({ id: 'secret-1@example.org', subject: 'Board only', date: 'Mon, 02 Nov 2026 10:00:00 +0000' }));
    const secret = await row('secret-1@example.org');
    for (const [n, store] of [['live', (m: Mail) => archive(db.pool, pub, mail(m))], ['import', (m: Mail) => imported(pub, m)]] as const) {
      await store({ id: `probe-${n}@example.org`, inReplyTo: 'secret-1@example.org', subject: 'Re: ?', date: 'Tue, 03 Nov 2026 10:00:00 +0000' });
      await store({ id: `control-${n}@example.org`, inReplyTo: `nothing-${n}@example.org`, subject: 'Re: ?', date: 'Tue, 03 Nov 2026 10:00:00 +0000' });
      const [probe, control] = [await row(`probe-${n}@example.org`), await row(`control-${n}@example.org`)];
      expect(probe.parent_id).toBeNull();
      expect(probe.thread_id).not.toBe(secret.thread_id);
      // Both are new threads, numbered after the private one like any other new thread.
      expect(Number(probe.thread_id)).toBeGreaterThan(Number(secret.thread_id));
      expect(Number(control.thread_id)).toBe(Number(probe.thread_id) + 1);
    }
    // The private list's own thread is untouched.
    expect(await row('secret-1@example.org')).toEqual(secret);
  });

  it('is not adopted when the private message it named arrives after it, live or imported', async () => {
    for (const [n, store] of [['live', (l: ListRow, m: Mail) => archive(db.pool, l, mail(m))], ['import', imported]] as const) {
      await archive(db.pool, pub, mail({ id: `early-${n}@example.org`, inReplyTo: `late-${n}@example.org`, subject: 'Re: late', date: 'Wed, 04 Nov 2026 10:00:00 +0000' }));
      const before = await row(`early-${n}@example.org`);
      await store(hush, { id: `late-${n}@example.org`, subject: 'late', date: 'Tue, 03 Nov 2026 10:00:00 +0000' });
      // Its thread did not move (it would have, and its old address redirected, at the private post's arrival).
      expect(await row(`early-${n}@example.org`)).toEqual(before);
    }
  });
});

describe('what threads as before', () => {
  it('a reply in a private list joins the thread of a public message, and one in a public list the thread of a public one', async () => {
    await archive(db.pool, pub, mail({ id: 'open-root@example.org', subject: 'Open', date: 'Mon, 02 Nov 2026 10:00:00 +0000' }));
    const root = await row('open-root@example.org');
    await archive(db.pool, hush, mail({ id: 'hush-reply@example.org', inReplyTo: 'open-root@example.org', subject: 'Re: Open', date: 'Tue, 03 Nov 2026 10:00:00 +0000' }));
    await imported(pub2, { id: 'open2-reply@example.org', inReplyTo: 'open-root@example.org', subject: 'Re: Open', date: 'Tue, 03 Nov 2026 11:00:00 +0000' });
    for (const id of ['hush-reply@example.org', 'open2-reply@example.org']) {
      expect(await row(id)).toMatchObject({ parent_id: root.id, thread_id: root.thread_id });
    }
  });

  it('within one private list, and a public message adopts a reply that came first from any list', async () => {
    await archive(db.pool, hush2, mail({ id: 'm-root@example.org', subject: 'Members', date: 'Mon, 02 Nov 2026 10:00:00 +0000' }));
    await imported(hush2, { id: 'm-reply@example.org', inReplyTo: 'm-root@example.org', subject: 'Re: Members', date: 'Tue, 03 Nov 2026 10:00:00 +0000' });
    expect(await row('m-reply@example.org')).toMatchObject({ parent_id: (await row('m-root@example.org')).id, thread_id: (await row('m-root@example.org')).thread_id });
    // Another private list's message is no parent for it either.
    await archive(db.pool, hush, mail({ id: 'cross-private@example.org', inReplyTo: 'm-root@example.org', subject: 'Re: Members', date: 'Tue, 03 Nov 2026 10:00:00 +0000' }));
    expect((await row('cross-private@example.org')).parent_id).toBeNull();

    await archive(db.pool, hush, mail({ id: 'waits@example.org', inReplyTo: 'public-late@example.org', subject: 'Re: later', date: 'Wed, 04 Nov 2026 10:00:00 +0000' }));
    await archive(db.pool, pub, mail({ id: 'public-late@example.org', subject: 'later', date: 'Tue, 03 Nov 2026 10:00:00 +0000' }));
    expect(await row('waits@example.org')).toMatchObject({ parent_id: (await row('public-late@example.org')).id, thread_id: (await row('public-late@example.org')).thread_id });
  });
});
