import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hideMessage } from '../src/db/messages.ts';
import type { ListRow } from '../src/db/lists.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';
import { archive, mail, newList } from './fixtures/archive/seed.ts';

let db: TestDatabase;
let web: RunningWeb;
let dev: ListRow;

const text = async (path: string) => (await fetch(`${web.url}${path}`, { redirect: 'manual' })).text();

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db, { PAGE_CACHE_MB: '0' });
  dev = await newList(db.pool, 'dev@lists.example.org');
  await archive(db.pool, dev, mail({ id: 'sept@example.org', subject: 'September', date: 'Tue, 15 Sep 2026 10:00:00 +0000' }));
  await archive(db.pool, dev, mail({ id: 'leak@example.org', subject: 'My phone number', date: 'Thu, 15 Oct 2026 10:00:00 +0000' }));
  await archive(db.pool, dev, mail({ id: 'dec@example.org', subject: 'December', date: 'Tue, 15 Dec 2026 10:00:00 +0000' }));
  await hideMessage(db.pool, dev.id, 'leak@example.org', 'privacy', 'mod@example.org');
});

afterAll(async () => {
  await web?.stop();
  await db?.drop();
});

describe('a month whose only message is hidden', () => {
  it('is not linked from the months beside it, as it is not listed on the list page', async () => {
    expect(await text('/lists/dev/')).not.toContain('2026-10');
    const sept = await text('/lists/dev/2026-09');
    const dec = await text('/lists/dev/2026-12');
    // The next month with a message the readers may see, skipping the one a moderator emptied.
    expect(sept).toContain('href="/lists/dev/2026-12/"');
    expect(dec).toContain('href="/lists/dev/2026-09/"');
    for (const page of [sept, dec]) expect(page).not.toContain('2026-10');
  });
});
