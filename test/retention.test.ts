import crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config.ts';
import { createList, type ListRow } from '../src/db/lists.ts';
import { addMember, findMember } from '../src/db/members.ts';
import { hourly } from '../src/delivery/maintenance.ts';
import { listHeld, moderate } from '../src/core/hold.ts';
import { receive } from '../src/core/inbound.ts';
import { log } from '../src/log.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { message, sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';
import { config } from '../src/config.ts';

/**
 * Rejected junk is bounded. Three 5 MB non-messages put 15 MB into
 * ingest_errors; nothing pruned it, nor held posts or bounce records, and no sender had a limit.
 */
// Read by config() on first use, in this test file's own process.
process.env.REJECTED_MAX_KB = '16';
process.env.REJECTED_PER_SENDER_PER_DAY = '3';
process.env.REJECTED_PER_CLIENT_PER_DAY = '100';
process.env.REJECTED_PER_DAY = '10';

let db: TestDatabase;
let smtp: RunningIngest;
let dev: ListRow;
let mod: ListRow;

/** A PDF-like blob with no header section: not a message at all. */
function nonMessage(bytes: number): Buffer {
  const body = crypto.randomBytes(Math.ceil((bytes * 3) / 4)).toString('base64').replace(/.{76}/g, '$&\r\n');
  // Ends in CRLF, as SMTP delivers it: what is stored is byte for byte what was sent.
  return Buffer.from(`%PDF-1.7\r\n${body}`.slice(0, bytes - 2).replace(/\r$/, 'x') + '\r\n');
}

async function rejected(from: string, raw: Buffer) {
  const res = await sendRaw(smtp.port, { from, to: ['dev@lists.example.org'] }, raw);
  expect(res.responseCode, res.response).toBe(554);
}

async function kept(sender: string) {
  const { rows } = await db.pool.query<{ reason: string; kept: number; size: string; sha256: string | null; client: string | null }>(
    `select reason, length(raw) as kept, size, sha256, client from ingest_errors where envelope_from = $1 order by id`, [sender]);
  return rows.map((r) => ({ ...r, size: Number(r.size) }));
}

beforeAll(async () => {
  db = await testDatabase();
  smtp = await startIngest(db.pool);
  dev = await createList(db.pool, { address: 'dev@lists.example.org', name: 'dev', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  mod = await createList(db.pool, { address: 'mod@lists.example.org', name: 'mod', description: '', postPolicy: 'moderated', subscribePolicy: 'confirm', archive: 'public', owners: ['owner@example.org'] });
  await addMember(db.pool, dev.id, 'vic@example.org', 'each');
});

afterAll(async () => {
  await smtp?.stop();
  await db?.drop();
});

describe('rejected mail is bounded', () => {
  const blobs = [nonMessage(5 * 1024 * 1024), nonMessage(5 * 1024 * 1024), nonMessage(5 * 1024 * 1024)];

  it('keeps only the first REJECTED_MAX_KB of each of three 5 MB non-messages, with its size and hash, and still answers 554', async () => {
    for (const blob of blobs) await rejected('junk@x.example', blob);
    const rows = await kept('junk@x.example');
    expect(rows).toHaveLength(3);
    rows.forEach((row, i) => {
      expect(row.kept).toBe(16 * 1024);
      expect(row.size).toBe(5 * 1024 * 1024);
      expect(row.sha256).toBe(crypto.createHash('sha256').update(blobs[i]).digest('hex'));
      expect(row.reason).toContain('does not start with a header section');
      expect(row.reason).toContain(`only the first 16 KB of ${5 * 1024 * 1024} bytes were kept`);
    });
    const { rows: total } = await db.pool.query(`select sum(length(raw))::int as bytes from ingest_errors`);
    expect(total[0].bytes).toBe(3 * 16 * 1024);
  });

  it('keeps a small rejected message whole', async () => {
    await rejected('small@x.example', nonMessage(2000));
    expect(await kept('small@x.example')).toEqual([expect.objectContaining({ kept: 2000, size: 2000, sha256: null })]);
  });

  it('past the quota per sender, records a line without the bytes and still answers 554', async () => {
    await rejected('junk@x.example', nonMessage(100_000));
    const fourth = (await kept('junk@x.example'))[3];
    expect(fourth).toMatchObject({ kept: 0, size: 100_000 });
    expect(fourth.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(fourth.reason).toContain('not kept: over the quota of 3 rejected messages a day from the sender junk@x.example');
  });

  it('past the quota per client, the same, whatever sender the client names', async () => {
    // This client has used 97 of its 100 for today already.
    await db.pool.query(`insert into rate_limits (key, window_start, hits) values ('rejected:client:203.0.113.9', now(), 97)`);
    for (const n of [1, 2, 3, 4]) {
      const results = await receive(db.pool, {
        envelopeFrom: `forged-${n}@x.example`, client: '203.0.113.9', raw: nonMessage(30_000), log,
        recipients: [{ list: dev, role: 'post', address: 'dev@lists.example.org' }],
      }, config());
      expect(results[0]?.responseCode).toBe(554);
    }
    expect((await kept('forged-3@x.example'))[0]).toMatchObject({ kept: 16 * 1024, client: '203.0.113.9' });
    const fourth = (await kept('forged-4@x.example'))[0];
    expect(fourth).toMatchObject({ kept: 0, size: 30_000 });
    expect(fourth.reason).toContain('from the client 203.0.113.9');
  });

  it('past the quota for the whole site in a day, the same', async () => {
    // 9 counted so far; the 10th is kept, the 11th is not.
    await rejected('tenth@x.example', nonMessage(1000));
    await rejected('eleventh@x.example', nonMessage(1000));
    expect((await kept('tenth@x.example'))[0]).toMatchObject({ kept: 1000 });
    const eleventh = (await kept('eleventh@x.example'))[0];
    expect(eleventh).toMatchObject({ kept: 0, size: 1000 });
    expect(eleventh.reason).toContain('over the quota of 10 rejected messages a day');
  });
});

describe('retention settings', () => {
  it('stops start-up with one line naming a bad value', () => {
    expect(() => parseConfig({ REJECTED_MAX_KB: 'lots' })).toThrow(/^Invalid configuration: REJECTED_MAX_KB="lots"/);
    expect(() => parseConfig({ KEEP_REJECTED_DAYS: '0' })).toThrow(/^Invalid configuration: KEEP_REJECTED_DAYS="0"/);
    expect(() => parseConfig({ HELD_EXPIRE_DAYS: '-1' })).toThrow(/^Invalid configuration: HELD_EXPIRE_DAYS="-1"/);
    expect(parseConfig({}).retention).toEqual({
      rejectedMaxKb: 64, rejectedPerSenderPerDay: 50, rejectedPerClientPerDay: 200, rejectedPerDay: 2000,
      keepRejectedDays: 30, keepDecidedDays: 30, keepBouncesDays: 180, heldExpireDays: 30,
    });
  });
});

describe('old records are pruned by the workers\' hourly chores', () => {
  const cfg = parseConfig({ MAIL_DOMAIN: 'lists.example.org', LOG_LEVEL: 'silent', KEEP_REJECTED_DAYS: '30', KEEP_DECIDED_DAYS: '30', KEEP_BOUNCES_DAYS: '60', HELD_EXPIRE_DAYS: '14' });
  const ago = (days: number) => `now() - interval '${days} days'`;

  beforeAll(async () => {
    // Posts held on a moderated list: one to be decided, one forgotten, one recent.
    for (const id of ['decided-long-ago', 'forgotten', 'recent']) {
      const res = await sendRaw(smtp.port, { from: 'stranger@x.example', to: ['mod@lists.example.org'] }, message({ id: `${id}@x.example`, from: 'stranger@x.example', to: 'mod@lists.example.org' }));
      expect(res.ok, res.response).toBe(true);
    }
    const decided = (await listHeld(db.pool, mod.id)).find((h) => h.message_id === 'decided-long-ago@x.example')!;
    await moderate(db.pool, decided.id, 'discard', { actor: 'owner@example.org', settings: config() });
    await db.pool.query(`update held_messages set received_at = ${ago(40)}, decided_at = ${ago(35)} where message_id = 'decided-long-ago@x.example'`);
    await db.pool.query(`update held_messages set received_at = ${ago(15)} where message_id = 'forgotten@x.example'`);
    // Bounce records: an out-of-office reply today, and one that is 61 days old.
    const vic = (await findMember(db.pool, dev.id, 'vic@example.org'))!;
    for (let i = 0; i < 2; i++) {
      await sendRaw(smtp.port, { from: '', to: [`dev-bounces+${vic.token}@lists.example.org`] }, message({ id: `ooo-${i}@example.org`, from: 'vic@example.org', subject: 'Out of office', headers: { 'Auto-Submitted': 'auto-replied' } }));
    }
    await db.pool.query(`update bounces set received_at = ${ago(61)} where id = (select min(id) from bounces)`);
    // Rejected mail: the first three are 31 days old.
    await db.pool.query(`update ingest_errors set received_at = ${ago(31)} where envelope_from = 'junk@x.example' and id < (select max(id) from ingest_errors where envelope_from = 'junk@x.example')`);
    await hourly(db.pool, cfg, log);
  });

  it('deletes rejected mail after KEEP_REJECTED_DAYS', async () => {
    expect(await kept('junk@x.example')).toEqual([expect.objectContaining({ kept: 0, size: 100_000 })]);
    expect(await kept('small@x.example')).toHaveLength(1);
  });

  it('deletes decided posts after KEEP_DECIDED_DAYS, and bounce records after KEEP_BOUNCES_DAYS', async () => {
    const { rows } = await db.pool.query(`select message_id from held_messages where message_id = 'decided-long-ago@x.example'`);
    expect(rows).toEqual([]);
    const { rows: bounces } = await db.pool.query(`select count(*)::int as n from bounces`);
    expect(bounces[0].n).toBe(1);
  });

  it('never deletes a post awaiting a moderator: after HELD_EXPIRE_DAYS it is discarded by expiry, with a record, and the owners are told', async () => {
    const { rows } = await db.pool.query(`select message_id, state, decided_by, decision_reason from held_messages where list_id = $1 order by id`, [mod.id]);
    expect(rows).toEqual([
      { message_id: 'forgotten@x.example', state: 'discarded', decided_by: 'expiry', decision_reason: 'not moderated within 14 days' },
      { message_id: 'recent@x.example', state: 'held', decided_by: null, decision_reason: null },
    ]);
    const { rows: notices } = await db.pool.query<{ raw: Buffer }>(
      `select m.raw from outbox o join outbound_mail m on m.id = o.mail_id where o.recipient = 'owner@example.org'`);
    const expiry = notices.map((n) => n.raw.toString()).find((t) => t.includes('expired'));
    expect(expiry).toContain('Subject: 1 held post expired on mod@lists.example.org');
    expect(expiry).toContain('stranger@x.example');
  });
});
