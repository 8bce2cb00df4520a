/*
 * A member of a list acting against the other members: what a post of theirs may make every
 * other member's mail program do or tell. Real SMTP in, the real worker, a capture relay out.
 */

import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createList, type ListRow } from '../src/db/lists.ts';
import { addMember, findMember } from '../src/db/members.ts';
import type { DeliveryWorker } from '../src/delivery/worker.ts';
import { drained, startCaptureRelay, startWorker, workerConfig, type CaptureRelay } from './helpers/capture-relay.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { message, sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';

let db: TestDatabase;
let relay: CaptureRelay;
let smtp: RunningIngest;
let worker: DeliveryWorker;
let dev: ListRow;

beforeAll(async () => {
  db = await testDatabase();
  relay = await startCaptureRelay();
  smtp = await startIngest(db.pool);
  dev = await createList(db.pool, { address: 'dev@lists.example.org', name: 'Developers', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: ['owner@example.org'] });
  await db.pool.query(`update lists set auth_policy = 'accept' where id = $1`, [dev.id]);
  await addMember(db.pool, dev.id, 'mallory@example.org', 'each', null);
  await addMember(db.pool, dev.id, 'quiet@members.example', 'each', null);
  worker = await startWorker(db, workerConfig(relay));
});

afterAll(async () => {
  await worker?.stop();
  await smtp?.stop();
  await relay?.stop();
  await db?.drop();
});

const headOf = (raw: Buffer) => raw.toString('latin1').split(/\r?\n\r?\n/)[0];

describe('a member\'s post', () => {
  it('reaches the other members without its requests for read and delivery receipts, which would tell the poster who is on the list', async () => {
    // Disposition-Notification-To (RFC 8098) makes the reader's mail program offer, or send by
    // itself, a receipt to that address; Return-Receipt-To, X-Confirm-Reading-To and X-PMRQC are
    // older spellings of the same. On a list whose roster is for owners only, every receipt is a
    // member's address handed to the poster. Mailman's cleanse handler removes the four.
    const raw = message({
      from: 'Mallory <mallory@example.org>', subject: 'Quick poll', id: 'receipts@example.org',
      headers: {
        'Disposition-Notification-To': 'harvest@evil.example',
        'Return-Receipt-To': 'harvest@evil.example',
        'X-Confirm-Reading-To': 'harvest@evil.example',
        'X-PMRQC': '1',
        'disposition-notification-TO': '<harvest2@evil.example>',
      },
      body: 'Who is reading this?\n',
    });
    const res = await sendRaw(smtp.port, { from: 'mallory@example.org', to: ['dev@lists.example.org'] }, raw);
    expect(res.ok, res.response).toBe(true);
    await drained(db);
    const copies = relay.to('quiet@members.example');
    expect(copies).toHaveLength(1);
    const head = headOf(copies[0].raw);
    expect(head).toMatch(/^Subject: Quick poll$/m);
    expect(head).not.toMatch(/harvest/i);
    expect(head).not.toMatch(/^(disposition-notification-to|return-receipt-to|x-confirm-reading-to|x-pmrqc):/im);
    // The archive keeps the post as it came (the record, byte for byte).
    const { rows } = await db.pool.query<{ raw: Buffer }>(`select raw from messages where message_id = 'receipts@example.org'`);
    expect(headOf(rows[0].raw)).toContain('Disposition-Notification-To: harvest@evil.example');
  });

  it('reaches the owners through LIST-owner@ without its requests for receipts, which would name the owners\' own addresses', async () => {
    const raw = message({
      from: 'Mallory <mallory@example.org>', to: 'dev-owner@lists.example.org', subject: 'Who runs this list?', id: 'owner-receipts@example.org',
      headers: { 'Disposition-Notification-To': 'harvest@evil.example', 'Return-Receipt-To': 'harvest@evil.example' },
    });
    const res = await sendRaw(smtp.port, { from: 'mallory@example.org', to: ['dev-owner@lists.example.org'] }, raw);
    expect(res.ok, res.response).toBe(true);
    await drained(db);
    const forwarded = relay.to('owner@example.org');
    expect(forwarded).toHaveLength(1);
    const head = headOf(forwarded[0].raw);
    expect(head).toMatch(/^Subject: Who runs this list\?$/m);
    expect(head).not.toMatch(/harvest/i);
  });

  it('does not cost another member their subscription when their server reports it could not convert the post\'s content (RFC 3463 X.6.x)', async () => {
    // X.6.x is "message content or media status": about what the poster wrote, not the mailbox it
    // went to. Exchange answers malformed MIME with 5.6.0 ConversionFailedPermanentException; read
    // as a hard bounce, three such posts from one member put every Exchange-hosted member on probation.
    const raw = message({ from: 'Mallory <mallory@example.org>', subject: 'Quick poll', id: 'conversion@example.org', body: 'Hello.\n' });
    expect((await sendRaw(smtp.port, { from: 'mallory@example.org', to: ['dev@lists.example.org'] }, raw)).ok).toBe(true);
    await drained(db);
    const victim = (await findMember(db.pool, dev.id, 'quiet@members.example'))!;
    const dsn = fs.readFileSync(path.join(import.meta.dirname, 'fixtures/bounces/exchange-conversion-failed-5.6.0.eml'), 'latin1')
      .replace(/MEMBERTOKEN/g, victim.token).replace(/RECIPIENT/g, victim.email).replace(/MESSAGEID/g, 'conversion@example.org');
    const res = await sendRaw(smtp.port, { from: '', to: [`dev-bounces+${victim.token}@lists.example.org`] }, dsn);
    expect(res.ok, res.response).toBe(true);
    const { rows } = await db.pool.query<{ kind: string; counted: boolean }>(
      `select kind, counted from bounces where member_id = $1`, [victim.id]);
    expect(rows).toHaveLength(1);
    expect(rows[0].kind).toBe('policy');
    const after = (await findMember(db.pool, dev.id, 'quiet@members.example'))!;
    expect(after.bounce_score).toBe(0);
    expect(after.status).toBe('active');
  });
});
