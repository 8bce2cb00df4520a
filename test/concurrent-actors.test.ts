/*
 * Races between actors that run at once on one database, as several web processes, workers and
 * CLI commands do: each test holds one side open on a connection of its own while the other runs,
 * then lets it go, and checks what survived.
 */

import crypto from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { hashToken } from '../src/auth/credentials.ts';
import { deleteList } from '../src/core/lists.ts';
import { welcome } from '../src/core/member-notices.ts';
import { confirm } from '../src/core/subscriptions.ts';
import { lockListForDigest } from '../src/db/digests.ts';
import { createList, type ListRow } from '../src/db/lists.ts';
import { addMember } from '../src/db/members.ts';
import { archiveMessage } from '../src/db/messages.ts';
import { insertRequest } from '../src/db/subscription-requests.ts';
import { parse } from '../src/mail/parse.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { message } from './helpers/smtp.ts';

let db: TestDatabase;

const newList = (address: string) =>
  createList(db.pool, { address, name: address.split('@')[0], description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });

/** A connection of its own, outside the pool (ended by the caller). */
async function connection(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  return c;
}

/** Waits until some other backend of this database waits for a lock. */
async function someoneWaitsForALock(): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const { rowCount } = await db.pool.query(
      `select 1 from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() and wait_event_type = 'Lock'`);
    if (rowCount) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('nobody waited for a lock');
}

beforeAll(async () => {
  db = await testDatabase();
});

afterAll(async () => {
  await db?.drop();
});

it('a post cross-posted to another list while its first list is deleted stays in the other list', async () => {
  const doomed: ListRow = await newList('doomed@lists.example.org');
  const other: ListRow = await newList('other@lists.example.org');
  const raw = Buffer.from(message({ id: 'cross@example.org', to: 'doomed@lists.example.org, other@lists.example.org' }));
  await archiveMessage(db.pool, doomed.id, raw, await parse(raw));
  // The same message arrives for the other list (its own delivery): archived, not yet committed.
  const ingest = await connection();
  try {
    await ingest.query('begin');
    const second = await archiveMessage(ingest, other.id, raw, await parse(raw));
    expect(second).toMatchObject({ created: false, addedToList: true });
    const deleting = deleteList(db.pool, doomed, { actor: 'test' });
    await someoneWaitsForALock();
    await ingest.query('commit');
    await deleting;
  } finally {
    await ingest.end();
  }
  const { rows } = await db.pool.query(
    `select l.address from messages m join list_messages lm on lm.message_id = m.id join lists l on l.id = lm.list_id where m.message_id = 'cross@example.org'`);
  expect(rows).toEqual([{ address: 'other@lists.example.org' }]);
});

/**
 * An admin's add of `email` (`listkeeper subscribe`: added, welcomed, not yet committed) while the
 * address's confirmation, asking for `mode`, goes through; the welcomes `email` was sent.
 */
async function welcomesWhenAddedWhileConfirming(list: ListRow, email: string, mode: 'each' | 'digest', added: 'added' | 'reactivated'): Promise<number> {
  const publicUrl = 'https://lists.example.org';
  const token = crypto.randomBytes(16).toString('hex');
  await insertRequest(db.pool, {
    listId: list.id, email, name: null, mode, action: 'subscribe', via: 'web',
    tokenHash: hashToken(token), state: 'confirm', expiresInHours: 48,
  });
  const admin = await connection();
  try {
    await admin.query('begin');
    expect(await addMember(admin, list.id, email, 'each')).toBe(added);
    await welcome(admin, list, email, publicUrl);
    const confirming = confirm(db.pool, token, { publicUrl });
    await someoneWaitsForALock();
    await admin.query('commit');
    expect(await confirming).toMatchObject({ state: 'done' });
  } finally {
    await admin.end();
  }
  const { rows } = await db.pool.query(
    `select count(*)::int as n from outbox o join outbound_mail b on b.id = o.mail_id
      where o.recipient = $1 and position($2 in convert_from(b.raw, 'UTF8')) > 0`,
    [email, `Subject: Welcome to ${list.address}`]);
  return rows[0].n as number;
}

it('an address subscribed by two hands at once (an admin add and a confirmation link) is welcomed once', async () => {
  expect(await welcomesWhenAddedWhileConfirming(await newList('welcome@lists.example.org'), 'new@example.org', 'each', 'added')).toBe(1);
});

it('an address added by an admin while its confirmation asking for digests goes through is welcomed once', async () => {
  expect(await welcomesWhenAddedWhileConfirming(await newList('modes@lists.example.org'), 'modes@example.org', 'digest', 'added')).toBe(1);
});

it('a former member put back by an admin while its confirmation asking for digests goes through is welcomed once', async () => {
  const list = await newList('back@lists.example.org');
  await addMember(db.pool, list.id, 'back@example.org', 'each');
  await db.pool.query(`update members set status = 'unsubscribed' where list_id = $1 and email = 'back@example.org'`, [list.id]);
  expect(await welcomesWhenAddedWhileConfirming(list, 'back@example.org', 'digest', 'reactivated')).toBe(1);
});

it('a digest being built does not hold up posts to its list, and keeps a second builder out', async () => {
  const list = await newList('digested@lists.example.org');
  const builder = await connection();
  try {
    await builder.query('begin');
    expect(await lockListForDigest(builder, list.id)).toMatchObject({ id: list.id });
    // A post to the list meanwhile: its list_messages row names the list (a key-share lock).
    const poster = await connection();
    try {
      await poster.query(`set lock_timeout = '2s'`);
      const raw = Buffer.from(message({ id: 'during-digest@example.org', to: 'digested@lists.example.org' }));
      expect(await archiveMessage(poster, list.id, raw, await parse(raw))).toMatchObject({ created: true, addedToList: true });
      // Another worker finds the digest taken.
      expect(await lockListForDigest(poster, list.id)).toBeNull();
    } finally {
      await poster.end();
    }
  } finally {
    await builder.query('rollback');
    await builder.end();
  }
});

it('two confirmed requests to join a list that needs approval tell the owners once', async () => {
  const list = await createList(db.pool, {
    address: 'approving@lists.example.org', name: 'approving', description: '', postPolicy: 'open', subscribePolicy: 'approve', archive: 'public', owners: ['boss@example.org'],
  });
  const tokens = ['cd'.repeat(16), 'ef'.repeat(16)];
  for (const token of tokens) {
    await insertRequest(db.pool, {
      listId: list.id, email: 'twice@example.org', name: null, mode: 'each', action: 'subscribe', via: 'mail',
      tokenHash: hashToken(token), state: 'confirm', expiresInHours: 48,
    });
  }
  // Two confirmation mails of two asks, answered at once.
  const results = await Promise.all(tokens.map((t) => confirm(db.pool, t, { publicUrl: 'https://lists.example.org' })));
  expect(results.map((r) => r.state)).toEqual(['approval', 'approval']);
  const { rows } = await db.pool.query(
    `select count(*)::int as n from outbox o join outbound_mail b on b.id = o.mail_id
      where o.recipient = 'boss@example.org' and position('Subject: Subscription request for approving@lists.example.org needs approval' in convert_from(b.raw, 'UTF8')) > 0`);
  expect(rows[0].n).toBe(1);
});
