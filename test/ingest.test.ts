import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createList } from '../src/db/lists.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { message, sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';

const fixture = (name: string) => fs.readFileSync(path.join(import.meta.dirname, 'fixtures/ingest', name));

let db: TestDatabase;
let smtp: RunningIngest;
let lmtp: RunningIngest;

async function newList(local: string) {
  return createList(db.pool, {
    address: `${local}@lists.example.org`, name: local, description: '', postPolicy: 'open',
    subscribePolicy: 'confirm', archive: 'public', owners: [],
  });
}

async function archived(messageId: string) {
  const { rows } = await db.pool.query('select * from messages where message_id = $1', [messageId]);
  return rows[0];
}

beforeAll(async () => {
  db = await testDatabase();
  await newList('dev');
  await newList('ops');
  smtp = await startIngest(db.pool, { maxSize: 64 * 1024 });
  lmtp = await startIngest(db.pool, { lmtp: true, maxSize: 64 * 1024 });
});

afterAll(async () => {
  await smtp?.stop();
  await lmtp?.stop();
  await db?.drop();
});

describe('SMTP ingest', () => {
  it('accepts a post to a list and commits it before answering 250', async () => {
    const res = await sendRaw(smtp.port, { from: 'alice@example.org', to: ['dev@lists.example.org'] }, message({ id: 'first@example.org', subject: 'First post' }));
    expect(res.ok).toBe(true);
    expect(res.response).toMatch(/^250 /);
    const row = await archived('first@example.org');
    expect(row.subject).toBe('First post');
    expect(row.from_email).toBe('alice@example.org');
  });

  it('refuses unknown recipients at RCPT TO with 550', async () => {
    const res = await sendRaw(smtp.port, { from: 'alice@example.org', to: ['nosuchlist@lists.example.org'] }, message({}));
    expect(res.ok).toBe(false);
    expect(res.responseCode).toBe(550);
    expect(res.response).toMatch(/no such list/);
  });

  it('refuses a known list name on another domain', async () => {
    const res = await sendRaw(smtp.port, { from: 'alice@example.org', to: ['dev@elsewhere.example'] }, message({}));
    expect(res.responseCode).toBe(550);
  });

  it('accepts every role address of a list at RCPT TO', async () => {
    for (const rcpt of ['dev-request', 'dev-subscribe', 'dev-unsubscribe', 'dev-owner', 'dev-confirm+abc123', 'dev-bounces+tok']) {
      const res = await sendRaw(smtp.port, { from: 'alice@example.org', to: [`${rcpt}@lists.example.org`] }, message({ subject: `to ${rcpt}` }));
      expect(res.ok, `${rcpt}: ${res.response}`).toBe(true);
    }
  });

  it('rejects an oversized message with 552 and stores nothing', async () => {
    const body = 'x'.repeat(100 * 1024);
    const res = await sendRaw(smtp.port, { from: 'alice@example.org', to: ['dev@lists.example.org'] }, message({ id: 'too-big@example.org', body }));
    expect(res.responseCode).toBe(552);
    expect(await archived('too-big@example.org')).toBeUndefined();
  });

  it('stores the raw bytes exactly as received', async () => {
    const raw = Buffer.concat([fixture('eight-bit-latin1-headers.eml')]);
    const res = await sendRaw(smtp.port, { from: 'juergen@example.de', to: ['dev@lists.example.org'] }, raw);
    expect(res.ok).toBe(true);
    const row = await archived('eight-bit-latin1@example.de');
    expect(Buffer.compare(row.raw, raw)).toBe(0);
    expect(row.size).toBe(raw.length);
  });

  it('decodes 8-bit headers into readable text', async () => {
    const row = await archived('eight-bit-latin1@example.de');
    expect(row.from_email).toBe('juergen@example.de');
    expect(row.body).toContain('Grüße');
  });

  it('never overwrites an archived message: another one reusing its Message-ID in the list is refused and kept aside', async () => {
    await sendRaw(smtp.port, { from: 'a@example.org', to: ['dev@lists.example.org'] }, message({ id: 'reused@example.org', subject: 'Original', body: 'original text' }));
    const res = await sendRaw(smtp.port, { from: 'mallory@example.org', to: ['dev@lists.example.org'] }, message({ id: 'reused@example.org', subject: 'Impostor', body: 'replacement text' }));
    expect(res.ok).toBe(false);
    expect(res.responseCode).toBe(554);
    expect(res.response).toMatch(/5\.7\.0 Message-ID <reused@example.org> already names a different message/);
    const row = await archived('reused@example.org');
    expect(row.subject).toBe('Original');
    expect(row.body).toContain('original text');
    const { rows } = await db.pool.query(`select reason, raw from ingest_errors where message_id = 'reused@example.org'`);
    expect(rows).toHaveLength(1);
    expect(rows[0].reason).toMatch(/already names a different message in the archive of the list dev@lists.example.org/);
    expect(rows[0].raw.toString()).toContain('replacement text');
    // The same message sent again (a retry after a lost reply) is still simply a duplicate.
    const again = await sendRaw(smtp.port, { from: 'a@example.org', to: ['dev@lists.example.org'] }, message({ id: 'reused@example.org', subject: 'Original', body: 'original text' }));
    expect(again.ok).toBe(true);
  });

  it('gives a message without Message-ID a stable generated id', async () => {
    const raw = fixture('missing-message-id.eml');
    await sendRaw(smtp.port, { from: 'bob@example.net', to: ['dev@lists.example.org'] }, raw);
    await sendRaw(smtp.port, { from: 'bob@example.net', to: ['dev@lists.example.org'] }, raw);
    const { rows } = await db.pool.query(`select message_id from messages where subject = 'no message id here'`);
    expect(rows).toHaveLength(1);
    expect(rows[0].message_id).toMatch(/^[0-9a-f]{40}@generated\.listkeeper\.invalid$/);
  });

  it('archives broken MIME with the text that could be read', async () => {
    const res = await sendRaw(smtp.port, { from: 'carol@example.com', to: ['dev@lists.example.org'] }, fixture('broken-mime-unterminated-boundary.eml'));
    expect(res.ok).toBe(true);
    const row = await archived('broken-mime-1@example.com');
    expect(row.body).toContain('The text part survives.');
  });

  it('decodes encoded words and quoted-printable in a real client reply', async () => {
    await sendRaw(smtp.port, { from: 'zoe@example.org', to: ['dev@lists.example.org'] }, fixture('thunderbird-multipart-alternative-reply.eml'));
    const row = await archived('CAJ9n3-thunderbird-reply@mail.example.org');
    expect(row.subject).toBe('Re: Über die Planung');
    expect(row.from_name).toBe('Zoë');
    expect(row.body).toContain('let’s ship it');
    expect(row.in_reply_to).toBe('root-of-plan@example.org');
  });

  it('records mail with no header section with its reason, answers 554, and keeps serving', async () => {
    const raw = fixture('no-header-section.eml');
    const res = await sendRaw(smtp.port, { from: 'x@example.org', to: ['dev@lists.example.org'] }, raw);
    expect(res.responseCode).toBe(554);
    expect(res.response).toMatch(/could not be parsed/);
    const { rows } = await db.pool.query('select reason, raw from ingest_errors where raw = $1', [raw]);
    expect(rows).toHaveLength(1);
    const after = await sendRaw(smtp.port, { from: 'a@example.org', to: ['dev@lists.example.org'] }, message({ id: 'after-garbage@example.org' }));
    expect(after.ok).toBe(true);
  });

  it('stores a message cross-posted to two lists once, in both lists', async () => {
    const res = await sendRaw(smtp.port, { from: 'a@example.org', to: ['dev@lists.example.org', 'ops@lists.example.org'] }, message({ id: 'crosspost@example.org' }));
    expect(res.ok).toBe(true);
    const { rows } = await db.pool.query(
      `select l.local_part from list_messages lm join lists l on l.id = lm.list_id
        join messages m on m.id = lm.message_id where m.message_id = 'crosspost@example.org' order by 1`);
    expect(rows.map((r) => r.local_part)).toEqual(['dev', 'ops']);
    const { rows: copies } = await db.pool.query(`select count(*)::int as n from messages where message_id = 'crosspost@example.org'`);
    expect(copies[0].n).toBe(1);
  });

  it('answers each recipient separately over LMTP', async () => {
    const res = await sendRaw(lmtp.port, { from: 'a@example.org', to: ['dev@lists.example.org', 'ops@lists.example.org'] }, message({ id: 'via-lmtp@example.org' }), { lmtp: true });
    expect(res.ok).toBe(true);
    expect(res.accepted.sort()).toEqual(['dev@lists.example.org', 'ops@lists.example.org']);
    expect(await archived('via-lmtp@example.org')).toBeDefined();
  });
});

describe('threading', () => {
  const post = (id: string, extra: Record<string, string> = {}) =>
    sendRaw(smtp.port, { from: 'a@example.org', to: ['dev@lists.example.org'] }, message({ id, subject: id, headers: extra }));
  const thread = async (id: string) => (await archived(id)).thread_id;
  const parentOf = async (id: string) => {
    const { rows } = await db.pool.query('select p.message_id from messages m left join messages p on p.id = m.parent_id where m.message_id = $1', [id]);
    return rows[0]?.message_id ?? null;
  };

  it('puts a reply in its parent thread by In-Reply-To', async () => {
    await post('t1-root@x');
    await post('t1-reply@x', { 'In-Reply-To': '<t1-root@x>', References: '<t1-root@x>' });
    expect(await thread('t1-reply@x')).toBe(await thread('t1-root@x'));
    expect(await parentOf('t1-reply@x')).toBe('t1-root@x');
  });

  it('a reply that arrives before its parent joins the parent thread when it arrives', async () => {
    await post('t2-reply@x', { 'In-Reply-To': '<t2-root@x>', References: '<t2-root@x>' });
    await post('t2-root@x');
    expect(await thread('t2-reply@x')).toBe(await thread('t2-root@x'));
    expect(await parentOf('t2-reply@x')).toBe('t2-root@x');
  });

  it('a chain delivered backwards heals into one thread with the right parents', async () => {
    await post('t3-c@x', { 'In-Reply-To': '<t3-b@x>', References: '<t3-a@x> <t3-b@x>' });
    await post('t3-b@x', { 'In-Reply-To': '<t3-a@x>', References: '<t3-a@x>' });
    await post('t3-a@x');
    const t = await thread('t3-a@x');
    expect(await thread('t3-b@x')).toBe(t);
    expect(await thread('t3-c@x')).toBe(t);
    expect(await parentOf('t3-c@x')).toBe('t3-b@x');
    expect(await parentOf('t3-b@x')).toBe('t3-a@x');
  });

  it('uses the closest known References entry when In-Reply-To is unknown', async () => {
    await post('t4-a@x');
    await post('t4-c@x', { 'In-Reply-To': '<t4-missing@x>', References: '<t4-a@x> <t4-missing@x>' });
    expect(await parentOf('t4-c@x')).toBe('t4-a@x');
    // When the missing middle message arrives, it becomes the closer parent.
    await post('t4-missing@x', { 'In-Reply-To': '<t4-a@x>', References: '<t4-a@x>' });
    expect(await parentOf('t4-c@x')).toBe('t4-missing@x');
    expect(await thread('t4-c@x')).toBe(await thread('t4-a@x'));
  });

  it('merges two threads that turn out to share a root', async () => {
    await post('t5-r1@x', { 'In-Reply-To': '<t5-root@x>' });
    await post('t5-r2@x', { 'In-Reply-To': '<t5-root@x>' });
    expect(await thread('t5-r1@x')).not.toBe(await thread('t5-r2@x'));
    await post('t5-root@x');
    const t = await thread('t5-root@x');
    expect(await thread('t5-r1@x')).toBe(t);
    expect(await thread('t5-r2@x')).toBe(t);
  });

  it('does not merge threads by subject', async () => {
    await sendRaw(smtp.port, { from: 'a@x.org', to: ['dev@lists.example.org'] }, message({ id: 't6-a@x', subject: 'Same subject' }));
    await sendRaw(smtp.port, { from: 'b@x.org', to: ['dev@lists.example.org'] }, message({ id: 't6-b@x', subject: 'Re: Same subject' }));
    expect(await thread('t6-a@x')).not.toBe(await thread('t6-b@x'));
  });

  it('threads a reply and its parent that arrive at the same moment', async () => {
    for (let i = 0; i < 10; i++) {
      await Promise.all([
        post(`t7-${i}-child@x`, { 'In-Reply-To': `<t7-${i}-root@x>` }),
        post(`t7-${i}-root@x`),
      ]);
      expect(await thread(`t7-${i}-child@x`)).toBe(await thread(`t7-${i}-root@x`));
      expect(await parentOf(`t7-${i}-child@x`)).toBe(`t7-${i}-root@x`);
    }
  });
});
