import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ListRow } from '../src/db/lists.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';
import { archive, mail, newList } from './fixtures/archive/seed.ts';

/**
 * What a reader who may not read a private list learns of its messages through the pages of a
 * public one: nothing, not even whether a Message-ID is used there.
 */
let db: TestDatabase;
let web: RunningWeb;
let pub: ListRow;
let hush: ListRow;

const get = (path: string) => fetch(`${web.url}${path}`, { redirect: 'manual' });
/** The page with the message's own Message-ID taken out, so that two pages can be compared. */
const shape = async (path: string, id: string) => (await (await get(path)).text()).replaceAll(id, 'ID');

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db, { PAGE_CACHE_MB: '0' });
  pub = await newList(db.pool, 'pub@lists.example.org');
  hush = await newList(db.pool, 'hush@lists.example.org', 'private');
});

afterAll(async () => {
  await web?.stop();
  await db?.drop();
});

describe('a Message-ID also used in a private list', () => {
  it('gives the links of a public message\'s page no ?list= when only a private list has another message under its Message-ID', async () => {
    await archive(db.pool, hush, mail({ id: 'taken@corp.example', subject: 'Board minutes', date: 'Mon, 02 Nov 2026 10:00:00 +0000', body: 'The merger is on.\n' }));
    await archive(db.pool, pub, mail({ id: 'taken@corp.example', subject: 'Hello', date: 'Mon, 02 Nov 2026 11:00:00 +0000', body: 'Just saying hello.\n' }));
    await archive(db.pool, pub, mail({ id: 'free@corp.example', subject: 'Hello', date: 'Mon, 02 Nov 2026 11:00:00 +0000', body: 'Just saying hello.\n' }));
    const taken = await shape('/message-id/taken@corp.example', 'taken@corp.example');
    const free = await shape('/message-id/free@corp.example', 'free@corp.example');
    expect(taken).toContain('Just saying hello');
    expect(taken).not.toContain('merger');
    // The links of the page (raw, attachments, a reply's parent) said "?list=pub" only when a
    // list the reader may not read had another message with this Message-ID.
    expect(taken).not.toContain('?list=');
    expect(free).not.toContain('?list=');
    expect(taken).toContain('href="/message-id/raw/ID"');
  });
});
