import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createList, type ListRow } from '../src/db/lists.ts';
import { addMember } from '../src/db/members.ts';
import type { DeliveryWorker } from '../src/delivery/worker.ts';
import { addSenderRule } from '../src/core/sender-rules.ts';
import { config } from '../src/config.ts';
import { drained, startCaptureRelay, startWorker, workerConfig, type CaptureRelay } from './helpers/capture-relay.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { message, sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';

/**
 * Automatic mail is never distributed as it stands, on any list, and a list's
 * own copies and notices never go round again. Over SMTP to open lists, the easiest to abuse.
 */
let db: TestDatabase;
let relay: CaptureRelay;
let smtp: RunningIngest;
let worker: DeliveryWorker;
let open: ListRow;

const OWNER = 'owner@example.org';

async function openList(local: string) {
  const list = await createList(db.pool, { address: `${local}@lists.example.org`, name: local, description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [OWNER] });
  await addMember(db.pool, list.id, 'ann@x.example', 'each');
  await addMember(db.pool, list.id, 'ben@y.example', 'each');
  return list;
}

async function postTo(list: string, id: string, opts: { from?: string; envelopeFrom?: string; headers?: Record<string, string> } = {}) {
  const from = opts.from ?? 'stranger@elsewhere.example';
  const res = await sendRaw(smtp.port, { from: opts.envelopeFrom ?? from, to: [`${list}@lists.example.org`] }, message({ id, from, to: `${list}@lists.example.org`, subject: `Post ${id}`, headers: opts.headers }));
  expect(res.ok, res.response).toBe(true);
}

const members = (m: { to: string }) => m.to === 'ann@x.example' || m.to === 'ben@y.example';
const copiesOf = (messageId: string) => relay.messages.filter((m) => members(m) && m.raw.toString('latin1').includes(`<${messageId}>`));
const settle = async () => {
  await drained(db);
  await new Promise((r) => setTimeout(r, 300));
};
async function heldRow(messageId: string) {
  const { rows } = await db.pool.query(`select state, rule, reason from held_messages where message_id = $1`, [messageId]);
  return rows;
}
/** The first mail the relay got that matches, once it has arrived. */
async function arrival(match: (m: { to: string; raw: Buffer }) => boolean) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const found = relay.messages.find(match);
    if (found) return found;
    if (Date.now() > deadline) throw new Error('no such mail arrived');
    await new Promise((r) => setTimeout(r, 50));
  }
}
const archived = async (messageId: string) => (await db.pool.query('select 1 from messages where message_id = $1', [messageId])).rows.length > 0;

beforeAll(async () => {
  db = await testDatabase();
  relay = await startCaptureRelay();
  smtp = await startIngest(db.pool);
  open = await openList('open');
  worker = await startWorker(db, workerConfig(relay));
});

afterAll(async () => {
  await worker?.stop();
  await smtp?.stop();
  await relay?.stop();
  await db?.drop();
});

describe('automatic mail posted to an open list', () => {
  it('holds auto-replies, auto-generated, bulk and junk mail, and mail from postmaster', async () => {
    await postTo('open', 'auto-replied@x.example', { headers: { 'Auto-Submitted': 'auto-replied' } });
    await postTo('open', 'auto-generated@x.example', { headers: { 'Auto-Submitted': 'auto-generated; owner-email="cron@x.example"' } });
    await postTo('open', 'bulk@x.example', { headers: { Precedence: 'bulk' } });
    await postTo('open', 'junk@x.example', { headers: { Precedence: 'junk' } });
    await postTo('open', 'x-autoreply@x.example', { headers: { 'X-Autoreply': 'yes' } });
    await postTo('open', 'postmaster@x.example', { from: 'postmaster@elsewhere.example' });
    await settle();
    for (const id of ['auto-replied', 'auto-generated', 'bulk', 'junk', 'x-autoreply', 'postmaster'].map((k) => `${k}@x.example`)) {
      expect(await heldRow(id), id).toEqual([expect.objectContaining({ state: 'held', rule: 'automatic' })]);
      expect(copiesOf(id), id).toHaveLength(0);
      expect(await archived(id), id).toBe(false);
    }
    expect((await heldRow('bulk@x.example'))[0].reason).toContain('Precedence: bulk');
  });

  it('holds it even from an allowlisted sender', async () => {
    await addSenderRule(db.pool, open, 'robot@elsewhere.example', 'allow', { actor: OWNER });
    await postTo('open', 'allowed-robot@x.example', { from: 'robot@elsewhere.example', headers: { 'Auto-Submitted': 'auto-replied' } });
    expect(await heldRow('allowed-robot@x.example')).toEqual([expect.objectContaining({ state: 'held', rule: 'automatic' })]);
  });

  it('drops delivery reports with a record: a null envelope sender, or MAILER-DAEMON', async () => {
    await postTo('open', 'null-sender@x.example', { envelopeFrom: '' });
    await postTo('open', 'daemon@x.example', { from: 'MAILER-DAEMON@mx.elsewhere.example' });
    await settle();
    for (const id of ['null-sender@x.example', 'daemon@x.example']) {
      expect(await heldRow(id), id).toEqual([expect.objectContaining({ state: 'discarded', rule: 'delivery-report' })]);
      expect(copiesOf(id), id).toHaveLength(0);
    }
  });

  it('still distributes a post marked Auto-Submitted: no, and one that came through another list', async () => {
    await postTo('open', 'by-hand@x.example', { headers: { 'Auto-Submitted': 'no' } });
    await postTo('open', 'via-other-list@x.example', { headers: { 'List-Id': '<users.other.example>', Precedence: 'list' } });
    await settle();
    expect(copiesOf('by-hand@x.example')).toHaveLength(2);
    expect(copiesOf('via-other-list@x.example')).toHaveLength(2);
  });
});

describe('the list\'s own mail coming back', () => {
  it('never distributes its own copy again, even after another list rewrote List-Id, From and Message-ID', async () => {
    await postTo('open', 'original@x.example', { from: 'alice@elsewhere.example' });
    await settle();
    const [copy] = copiesOf('original@x.example');
    // What a list that has us as a member, with DMARC mitigation and its own Message-IDs, sends back.
    const back = copy.raw.toString('latin1')
      .replace(/^List-Id: .*$/m, 'List-Id: <other.lists.example.net>')
      .replace(/^From: .*$/m, 'From: "Alice via open" <open@lists.example.org>')
      .replace(/^Message-ID: .*$/mi, 'Message-ID: <rewritten-by-other-list@lists.example.net>');
    const res = await sendRaw(smtp.port, { from: 'other-bounces@lists.example.net', to: ['open@lists.example.org'] }, back);
    expect(res.ok, res.response).toBe(true);
    // The copy itself, forwarded by a member's mailbox with its envelope kept.
    const forwarded = await sendRaw(smtp.port, { from: copy.from, to: ['open@lists.example.org'] }, copy.raw.toString('latin1').replace(/^List-Id: .*\r?\n/m, ''));
    expect(forwarded.ok, forwarded.response).toBe(true);
    await settle();
    expect(copiesOf('rewritten-by-other-list@lists.example.net')).toHaveLength(0);
    expect(await heldRow('rewritten-by-other-list@lists.example.net')).toEqual([expect.objectContaining({ state: 'discarded', rule: 'loop' })]);
    expect(copiesOf('original@x.example')).toHaveLength(2);
  });

  it('never distributes its own notice that comes back to the posting address', async () => {
    const res = await sendRaw(smtp.port, { from: 'fwd@x.example', to: ['open-subscribe@lists.example.org'] }, message({ from: 'fwd@x.example', to: 'open-subscribe@lists.example.org', subject: 'subscribe' }));
    expect(res.ok, res.response).toBe(true);
    const notice = await arrival((m) => m.to === 'fwd@x.example');
    // fwd@ forwards everything to the list, with its own envelope sender.
    const back = await sendRaw(smtp.port, { from: 'fwd@x.example', to: ['open@lists.example.org'] }, notice.raw);
    expect(back.ok, back.response).toBe(true);
    await settle();
    const id = /^Message-ID: <([^>]+)>/mi.exec(notice.raw.toString('latin1'))![1];
    expect(await heldRow(id)).toEqual([expect.objectContaining({ state: 'discarded', rule: 'loop' })]);
    expect(copiesOf(id)).toHaveLength(0);
  });

  it('never distributes mail forwarded to its owners that comes back (X-Loop: LIST-owner@)', async () => {
    await sendRaw(smtp.port, { from: 'worried@x.example', to: ['open-owner@lists.example.org'] }, message({ id: 'to-owners@x.example', from: 'worried@x.example', to: 'open-owner@lists.example.org' }));
    const forward = await arrival((m) => m.to === OWNER && m.raw.includes('<to-owners@x.example>'));
    expect(forward.raw.toString('latin1')).toMatch(/^X-Loop: open-owner@lists\.example\.org/);
    // The owner's mailbox leads back to the list.
    await sendRaw(smtp.port, { from: 'worried@x.example', to: ['open@lists.example.org'] }, forward.raw);
    await settle();
    expect(await heldRow('to-owners@x.example')).toEqual([expect.objectContaining({ state: 'discarded', rule: 'loop' })]);
    expect(copiesOf('to-owners@x.example')).toHaveLength(0);
  });

  it('forwards mail to its owners without a verdict forged under our name, in a field or hidden behind a lone CR', async () => {
    const ours = config().heloName;
    const raw = message({ id: 'forged-ar@x.example', from: 'ceo@bank.example', to: 'open-owner@lists.example.org', headers: {
      'Authentication-Results': `${ours}; dkim=pass header.d=bank.example; dmarc=pass header.from=bank.example`,
      'ARC-Authentication-Results': 'i=1; mx.other.example; spf=pass',
      Subject: `Wire transfer\rAuthentication-Results: (c) ${ours.toUpperCase()}; dmarc=pass header.from=bank.example`,
    } });
    expect((await sendRaw(smtp.port, { from: 'eve@evil.example', to: ['open-owner@lists.example.org'] }, raw)).ok).toBe(true);
    const text = (await arrival((m) => m.to === OWNER && m.raw.includes('<forged-ar@x.example>'))).raw.toString('latin1');
    expect(text).not.toMatch(/dmarc=pass/);
    // Another server's results, and everything else the sender wrote, are forwarded as they came.
    expect(text).toMatch(/^ARC-Authentication-Results: i=1; mx\.other\.example; spf=pass\r$/m);
    expect(text).toMatch(/^Subject: Wire transfer\r$/m);
    expect(text).toMatch(/^X-Loop: open-owner@lists\.example\.org\r\n/);
  });

  it('does not take another list\'s X-Loop for its own when one address ends like the other', async () => {
    await openList('pen');
    await postTo('pen', 'came-through-open@x.example', { headers: { 'X-Loop': 'open@lists.example.org' } });
    await settle();
    expect(copiesOf('came-through-open@x.example')).toHaveLength(2);
  });
});
