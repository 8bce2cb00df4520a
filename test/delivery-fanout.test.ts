import crypto from 'node:crypto';
import { dkimSign } from 'mailauth/lib/dkim/sign.js';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createList, updateDeliverySettings, type ListRow } from '../src/db/lists.ts';
import { addMember, findMember, setDigestFormat } from '../src/db/members.ts';
import { queueStats } from '../src/db/outbox.ts';
import { setResolvers } from '../src/dns.ts';
import type { DeliveryWorker } from '../src/delivery/worker.ts';
import { verpAddress } from '../src/mail/address.ts';
import { parse } from '../src/mail/parse.ts';
import { drained, startCaptureRelay, startWorker, workerConfig, type CaptureRelay } from './helpers/capture-relay.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { message, sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';

let db: TestDatabase;
let relay: CaptureRelay;
let smtp: RunningIngest;
let worker: DeliveryWorker;
let dev: ListRow;

async function newList(local: string, postPolicy: 'open' | 'members' = 'open') {
  return createList(db.pool, { address: `${local}@lists.example.org`, name: local, description: '', postPolicy, subscribePolicy: 'confirm', archive: 'public', owners: ['owner@example.org'] });
}

async function postTo(list: string, opts: Parameters<typeof message>[0] & { from?: string }) {
  const res = await sendRaw(smtp.port, { from: opts.from ?? 'alice@example.org', to: [`${list}@lists.example.org`] }, message({ ...opts, to: `${list}@lists.example.org` }));
  expect(res.ok, res.response).toBe(true);
}

function headers(raw: Buffer): string[] {
  const head = raw.toString('latin1').split('\r\n\r\n')[0];
  return head.replace(/\r\n[ \t]+/g, ' ').split('\r\n');
}

const field = (raw: Buffer, name: string) => headers(raw).filter((l) => l.toLowerCase().startsWith(`${name.toLowerCase()}:`)).map((l) => l.slice(name.length + 1).trim());

// A DKIM key of our own; DNS is stubbed to publish it.
const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const privatePem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const publicB64 = publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
const dkimRecords: Record<string, string> = {
  'author._domainkey.example.org': `v=DKIM1; k=rsa; p=${publicB64}`,
  'lists._domainkey.lists.example.org': `v=DKIM1; k=rsa; p=${publicB64}`,
};
const stubResolver = async (name: string, type: string) => {
  if (type === 'TXT' && dkimRecords[name]) return [[dkimRecords[name]]];
  throw Object.assign(new Error(`no ${type} for ${name}`), { code: 'ENOTFOUND' });
};

beforeAll(async () => {
  db = await testDatabase();
  relay = await startCaptureRelay();
  smtp = await startIngest(db.pool);
  dev = await newList('dev');
  for (const [email, mode] of [['ann@x.example', 'each'], ['ben@y.example', 'each'], ['cat@y.example', 'digest'], ['dan@z.example', 'nomail']] as const) {
    await addMember(db.pool, dev.id, email, mode);
  }
  await addMember(db.pool, dev.id, 'eve@x.example', 'each');
  await db.pool.query(`update members set status = 'disabled' where email = 'eve@x.example'`);
  await addMember(db.pool, dev.id, 'fay@x.example', 'each');
  await db.pool.query(`update members set status = 'unsubscribed' where email = 'fay@x.example'`);
  worker = await startWorker(db, workerConfig(relay));
});

afterAll(async () => {
  setResolvers();
  await worker?.stop();
  await smtp?.stop();
  await relay?.stop();
  await db?.drop();
});

describe('fan-out', () => {
  it('delivers a post once to each active member in each mode, and to nobody else', async () => {
    relay.clear();
    await postTo('dev', { id: 'fan-1@example.org', subject: 'Fan-out' });
    await relay.waitFor(2);
    await drained(db);
    expect(relay.messages.map((m) => m.to).sort()).toEqual(['ann@x.example', 'ben@y.example']);
  });

  it('keeps the original Message-ID and body on every copy', async () => {
    for (const m of relay.messages) {
      const parsed = await parse(m.raw);
      expect(parsed.messageId).toBe('fan-1@example.org');
      expect(parsed.text).toContain('Hello, list.');
    }
  });

  it('gives every copy the list headers (RFC 2369, 2919, 8058, Archived-At) with the member\'s own one-click link', async () => {
    const ann = await findMember(db.pool, dev.id, 'ann@x.example');
    const raw = relay.to('ann@x.example')[0].raw;
    expect(field(raw, 'List-Id')).toEqual(['<dev.lists.example.org>']);
    expect(field(raw, 'List-Post')).toEqual(['<mailto:dev@lists.example.org>']);
    expect(field(raw, 'List-Help')).toEqual(['<mailto:dev-request@lists.example.org?subject=help>']);
    expect(field(raw, 'List-Subscribe')).toEqual(['<mailto:dev-subscribe@lists.example.org>, <https://lists.example.org/lists/dev/subscribe>']);
    expect(field(raw, 'List-Unsubscribe')).toEqual([`<mailto:dev-unsubscribe@lists.example.org>, <https://lists.example.org/u/${ann!.token}>`]);
    expect(field(raw, 'List-Unsubscribe-Post')).toEqual(['List-Unsubscribe=One-Click']);
    expect(field(raw, 'List-Archive')).toEqual(['<https://lists.example.org/lists/dev/>']);
    expect(field(raw, 'Archived-At')).toEqual(['<https://lists.example.org/message-id/fan-1@example.org>']);
    expect(field(raw, 'Precedence')).toEqual(['list']);
    expect(field(raw, 'Message-ID')).toEqual(['<fan-1@example.org>']);
  });

  it('sends each copy from a VERP address that names its member, different for every member', async () => {
    const senders = new Map<string, string>();
    for (const m of relay.messages) {
      const member = await findMember(db.pool, dev.id, m.to);
      expect(m.from).toBe(`dev-bounces+${member!.token}@lists.example.org`);
      senders.set(m.to, m.from);
    }
    expect(new Set(senders.values()).size).toBe(relay.messages.length);
  });

  it('builds in SQL, for every copy of a post, the VERP address verpAddress builds, whatever the list\'s name', async () => {
    // accept_post (sql/0013) writes each copy's envelope sender from verpParts; digests and notices
    // use verpAddress: both must agree, or bounces would not find their member.
    const odd = await newList('ops.team_2-x');
    for (const email of ['gil@x.example', 'hal@y.example']) await addMember(db.pool, odd.id, email, 'each');
    relay.clear();
    await postTo('ops.team_2-x', { id: 'verp-agree@example.org', subject: 'VERP' });
    await relay.waitFor(2);
    await drained(db);
    expect(relay.messages).toHaveLength(2);
    for (const m of relay.messages) {
      const member = await findMember(db.pool, odd.id, m.to);
      expect(m.from).toBe(verpAddress(odd.address, member!.token));
    }
  });

  it('leaves the author\'s DKIM signature valid on the delivered copy', async () => {
    relay.clear();
    const unsigned = Buffer.from(message({ id: 'signed-1@example.org', from: 'Alice <alice@example.org>', to: 'dev@lists.example.org', subject: 'Signed by the author', body: 'Signed text.\n' }));
    const key = { signingDomain: 'example.org', selector: 'author', privateKey: privatePem, canonicalization: 'relaxed/relaxed' };
    const { signatures } = await dkimSign(unsigned, { ...key, signatureData: [key] });
    const signed = Buffer.concat([Buffer.from(signatures), unsigned]);
    const before = await dkimVerify(signed, { resolver: stubResolver });
    expect(before.results[0].status.result).toBe('pass');

    const res = await sendRaw(smtp.port, { from: 'alice@example.org', to: ['dev@lists.example.org'] }, signed);
    expect(res.ok).toBe(true);
    // Copies of earlier posts may still arrive after clear(): pick this post's copy by its id.
    await drained(db);
    const copy = (await relay.copy('ben@y.example', 'signed-1@example.org')).raw;
    expect(field(copy, 'List-Id')).toEqual(['<dev.lists.example.org>']);
    const after = await dkimVerify(copy, { resolver: stubResolver });
    expect(after.results.map((r) => [r.signingDomain, r.status.result])).toEqual([['example.org', 'pass']]);
  });

  it('signs copies with the list\'s own DKIM key when the list has one', async () => {
    const signedList = await newList('signed');
    await addMember(db.pool, signedList.id, 'ann@x.example', 'each');
    await updateDeliverySettings(db.pool, signedList.id, { dkim_domain: 'lists.example.org', dkim_selector: 'lists', dkim_private_key: privatePem });
    relay.clear();
    await postTo('signed', { id: 'list-signed@example.org' });
    await relay.waitFor(1);
    const result = await dkimVerify(relay.messages[0].raw, { resolver: stubResolver });
    expect(result.results.map((r) => [r.signingDomain, r.status.result])).toEqual([['lists.example.org', 'pass']]);
  });
});

describe('retries and failures', () => {
  let list: ListRow;
  beforeAll(async () => {
    list = await newList('flaky');
    for (const e of ['later@r.example', 'gone@r.example', 'blocked@r.example', 'content@r.example', 'ok@r.example']) await addMember(db.pool, list.id, e, 'each');
    relay.setRule((address, attempt) => {
      if (address === 'later@r.example' && attempt === 1) return { code: 451, message: '4.7.1 Greylisted, try again later' };
      if (address === 'gone@r.example') return { code: 550, message: '5.1.1 <gone@r.example>: Recipient address rejected: User unknown' };
      if (address === 'blocked@r.example') return { code: 554, message: '5.7.1 Message rejected as spam' };
      return null;
    });
    relay.setDataRule((address) => (address === 'content@r.example' ? { code: 550, message: 'Message refused' } : null));
    relay.clear();
    await postTo('flaky', { id: 'flaky-1@example.org' });
  });
  afterAll(() => {
    relay.setRule(null);
    relay.setDataRule(null);
  });

  const row = async (recipient: string) =>
    (await db.pool.query(`select state, attempts, last_error from outbox where recipient = $1 and list_id = $2`, [recipient, list.id])).rows[0];

  it('retries a copy refused with 4xx and delivers it on a later attempt', async () => {
    await relay.waitFor(2, 20_000);
    const deadline = Date.now() + 20_000;
    while (relay.to('later@r.example').length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(relay.to('later@r.example')).toHaveLength(1);
    expect(relay.attempts.get('later@r.example')).toBe(2);
    await drained(db);
    expect(await row('later@r.example')).toMatchObject({ state: 'sent', attempts: 2 });
  });

  it('gives up at once on a 5xx and counts it against the member', async () => {
    expect(await row('gone@r.example')).toMatchObject({ state: 'failed', attempts: 1 });
    expect((await row('gone@r.example')).last_error).toContain('User unknown');
    const member = await findMember(db.pool, list.id, 'gone@r.example');
    expect(member!.bounce_score).toBe(1);
    const { rows } = await db.pool.query(`select source, kind, counted from bounces where member_id = $1`, [member!.id]);
    expect(rows).toEqual([{ source: 'smtp', kind: 'hard', counted: true }]);
  });

  it('does not count a 5.7.1 spam refusal against the member', async () => {
    expect(await row('blocked@r.example')).toMatchObject({ state: 'failed' });
    const member = await findMember(db.pool, list.id, 'blocked@r.example');
    expect(member!.bounce_score).toBe(0);
    const { rows } = await db.pool.query(`select kind, counted from bounces where member_id = $1`, [member!.id]);
    expect(rows).toEqual([{ kind: 'policy', counted: false }]);
  });

  it('does not count a refusal of the content after DATA against the member', async () => {
    expect(await row('content@r.example')).toMatchObject({ state: 'failed' });
    const member = await findMember(db.pool, list.id, 'content@r.example');
    expect(member!.bounce_score).toBe(0);
    const { rows } = await db.pool.query(`select kind, category, counted from bounces where member_id = $1`, [member!.id]);
    expect(rows).toEqual([{ kind: 'policy', category: 'sender_or_content', counted: false }]);
  });

  it('gives up on a copy that is still deferred after the give-up period', async () => {
    relay.setRule((address) => (address === 'ok@r.example' ? { code: 421, message: '4.3.2 Try again later' } : null));
    const old = await newList('old');
    await addMember(db.pool, old.id, 'ok@r.example', 'each');
    await postTo('old', { id: 'old-1@example.org' });
    await db.pool.query(`update outbox set created_at = now() - interval '6 days' where list_id = $1`, [old.id]);
    const deadline = Date.now() + 10_000;
    let state = '';
    while (Date.now() < deadline) {
      state = (await db.pool.query(`select state from outbox where list_id = $1`, [old.id])).rows[0].state;
      if (state === 'failed') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(state).toBe('failed');
  });
});

describe('many workers on one queue', () => {
  it('two more workers racing for one queue deliver every copy exactly once', async () => {
    const big = await newList('big');
    await db.pool.query(
      `insert into members (list_id, email, mode) select $1, 'm' || g || '@race' || (g % 7) || '.example', 'each' from generate_series(1, 300) g`,
      [big.id],
    );
    const cfg = workerConfig(relay, { DELIVERY_BATCH_SIZE: '25' });
    const others = [await startWorker(db, cfg, 'racer-1'), await startWorker(db, cfg, 'racer-2')];
    try {
      relay.clear();
      await postTo('big', { id: 'race-1@example.org' });
      await relay.waitFor(300);
      await drained(db);
      await new Promise((r) => setTimeout(r, 300));
      const counts = new Map<string, number>();
      for (const m of relay.messages) counts.set(m.to, (counts.get(m.to) ?? 0) + 1);
      expect(counts.size).toBe(300);
      expect([...counts.values()].every((n) => n === 1)).toBe(true);
      const { rows } = await db.pool.query(`select count(distinct locked_by)::int as n from outbox where list_id = $1`, [big.id]);
      expect(rows[0].n).toBe(0); // finished rows release their lock
    } finally {
      for (const w of others) await w.stop();
    }
  });

  it('reports the queue by state with the oldest waiting row and the live workers', async () => {
    const stats = await queueStats(db.pool, 2);
    expect(Object.keys(stats.counts).sort()).toEqual(['failed', 'queued', 'sending', 'sent']);
    expect(stats.counts.sent).toBeGreaterThanOrEqual(300);
    expect(stats.counts.failed).toBeGreaterThanOrEqual(2);
    expect(stats.workers.map((w) => w.name)).toContain(worker.name);
    expect(stats.workers.map((w) => w.name)).not.toContain('racer-1');
  });
});

describe('digests', () => {
  it('sends digest members one MIME or plain digest once the size threshold is reached', async () => {
    const list = await newList('dig');
    await addMember(db.pool, list.id, 'each@d.example', 'each');
    await addMember(db.pool, list.id, 'mime@d.example', 'digest');
    await addMember(db.pool, list.id, 'plain@d.example', 'digest');
    await setDigestFormat(db.pool, list.id, 'plain@d.example', 'plain');
    await updateDeliverySettings(db.pool, list.id, { digest_size_threshold: 400 });
    relay.clear();
    await postTo('dig', { id: 'dig-1@example.org', subject: 'First of the day', body: 'one\n' });
    await relay.waitFor(1);
    expect(relay.to('mime@d.example')).toHaveLength(0);
    await postTo('dig', { id: 'dig-2@example.org', subject: 'Second of the day', body: 'two\n' });
    await relay.waitFor(4, 20_000);
    const mime = await parse(relay.to('mime@d.example')[0].raw);
    expect(mime.subject).toBe('dig Digest, Vol 1, Issue 1');
    expect(mime.headers.get('content-type')![0]).toMatch(/^multipart\/mixed/);
    expect(relay.to('mime@d.example')[0].raw.toString()).toContain('Message-ID: <dig-2@example.org>');
    const plain = relay.to('plain@d.example')[0];
    expect(plain.raw.toString()).toContain('Subject: Second of the day');
    expect(plain.raw.toString()).toContain(`${'-'.repeat(30)}`);
    const member = await findMember(db.pool, list.id, 'plain@d.example');
    expect(plain.from).toBe(`dig-bounces+${member!.token}@lists.example.org`);
    expect(field(plain.raw, 'List-Unsubscribe')[0]).toContain(`/u/${member!.token}`);
    expect(relay.to('each@d.example')).toHaveLength(2);
  });
});

describe('daily digests', () => {
  it('sends a digest once the oldest waiting post is a day old, however small', async () => {
    const list = await newList('daily');
    await addMember(db.pool, list.id, 'reader@d.example', 'digest');
    relay.clear();
    await postTo('daily', { id: 'daily-1@example.org', subject: 'Only one today' });
    await new Promise((r) => setTimeout(r, 1200));
    expect(relay.to('reader@d.example')).toHaveLength(0);
    await db.pool.query(`update digest_items set added_at = now() - interval '25 hours' where list_id = $1`, [list.id]);
    await relay.waitFor(1);
    const digest = await parse(relay.to('reader@d.example')[0].raw);
    expect(digest.subject).toBe('daily Digest, Vol 1, Issue 1');
    expect(digest.text).toContain('1. Only one today');
    expect((await db.pool.query('select count(*)::int as n from digest_items where list_id = $1', [list.id])).rows[0].n).toBe(0);
  });
});

describe('DMARC mitigation', () => {
  it('rewrites From only for authors whose domain publishes p=reject or quarantine', async () => {
    setResolvers({
      txt: async (name) => {
        if (name === '_dmarc.strict.example') return [['v=DMARC1; p=reject; rua=mailto:d@strict.example']];
        if (name === '_dmarc.relaxed.example') return [['v=DMARC1; p=none']];
        throw Object.assign(new Error('no record'), { code: 'ENODATA' });
      },
    });
    const list = await newList('dm');
    await addMember(db.pool, list.id, 'reader@d.example', 'each');
    await updateDeliverySettings(db.pool, list.id, { dmarc_mitigation: 'munge_from', subject_prefix: '[dm]' });
    relay.clear();
    await postTo('dm', { id: 'dm-strict@example.org', from: 'Sam <sam@strict.example>' });
    await postTo('dm', { id: 'dm-relaxed@example.org', from: 'Rob <rob@relaxed.example>' });
    await relay.waitFor(2);
    const byId = new Map<string, Buffer>();
    for (const m of relay.messages) byId.set(field(m.raw, 'Message-ID')[0], m.raw);
    const strict = await parse(byId.get('<dm-strict@example.org>')!);
    expect(strict.fromEmail).toBe('dm@lists.example.org');
    expect(strict.fromName).toBe('Sam via dm');
    expect(strict.headers.get('reply-to')).toEqual(['Sam <sam@strict.example>']);
    expect(strict.subject).toBe('[dm] Hello');
    const relaxed = await parse(byId.get('<dm-relaxed@example.org>')!);
    expect(relaxed.fromEmail).toBe('rob@relaxed.example');
    const { rows } = await db.pool.query(`select domain, policy from dmarc_policies order by domain`);
    expect(rows).toEqual([{ domain: 'relaxed.example', policy: 'none' }, { domain: 'strict.example', policy: 'reject' }]);
  });
});

describe('settings changed between two posts', () => {
  it('gives the next post the new prefix and footer at once, though the worker just sent one of the list', async () => {
    const list = await newList('turn');
    await addMember(db.pool, list.id, 'reader@t.example', 'each');
    relay.clear();
    await postTo('turn', { id: 'turn-1@example.org', subject: 'Before' });
    await relay.waitFor(1);
    await updateDeliverySettings(db.pool, list.id, { subject_prefix: '[turn]', footer: 'New footer here' });
    await postTo('turn', { id: 'turn-2@example.org', subject: 'After' });
    await relay.waitFor(2);
    const byId = new Map(relay.messages.map((m) => [field(m.raw, 'Message-ID')[0], m.raw]));
    const before = await parse(byId.get('<turn-1@example.org>')!);
    expect(before.subject).toBe('Before');
    const after = await parse(byId.get('<turn-2@example.org>')!);
    expect(after.subject).toBe('[turn] After');
    expect(after.text).toContain('New footer here');
  });
});

describe('a post without a Message-ID', () => {
  it('goes out with the Message-ID the archive gave it, the one its Archived-At names', async () => {
    const list = await newList('noid');
    await addMember(db.pool, list.id, 'one@n.example', 'each');
    await addMember(db.pool, list.id, 'two@n.example', 'each');
    relay.clear();
    await postTo('noid', { id: null, subject: 'No identity' });
    await relay.waitFor(2);
    const { rows } = await db.pool.query(`select m.message_id from messages m join list_messages lm on lm.message_id = m.id where lm.list_id = $1`, [list.id]);
    expect(rows).toHaveLength(1);
    for (const m of relay.messages) {
      expect(field(m.raw, 'Message-ID')).toEqual([`<${rows[0].message_id}>`]);
      expect(field(m.raw, 'Archived-At')[0]).toContain(encodeURIComponent(rows[0].message_id).replace(/%40/g, '@'));
    }
  });
});

describe('direct MX delivery', () => {
  it('looks up the recipient domain\'s MX when no relay is configured', async () => {
    await worker.stop();
    setResolvers({ mx: async (domain) => (domain === 'mx.example' ? [{ exchange: '127.0.0.1', priority: 10 }] : []) });
    const direct = await startWorker(db, workerConfig(relay, { RELAY_URL: '', DELIVERY_MX_PORT: String(relay.port), DELIVERY_MX_ALLOW: 'loopback' }));
    try {
      const list = await newList('direct');
      await addMember(db.pool, list.id, 'someone@mx.example', 'each');
      await addMember(db.pool, list.id, 'nobody@null-mx.example', 'each');
      relay.clear();
      await postTo('direct', { id: 'direct-1@example.org' });
      await relay.waitFor(1);
      await drained(db);
      expect(relay.messages.map((m) => m.to)).toEqual(['someone@mx.example']);
      const { rows } = await db.pool.query(`select state, last_error from outbox where recipient = 'nobody@null-mx.example'`);
      expect(rows[0].state).toBe('failed');
      expect(rows[0].last_error).toContain('null MX');
    } finally {
      await direct.stop();
      worker = await startWorker(db, workerConfig(relay));
    }
  });
});

describe('deleting a list', () => {
  it('takes the list\'s waiting copies out of the queue', async () => {
    relay.setRule((address) => (address === 'waiting@w.example' ? { code: 451, message: '4.3.0 later' } : null));
    try {
      const list = await newList('doomed');
      await addMember(db.pool, list.id, 'waiting@w.example', 'each');
      await postTo('doomed', { id: 'doomed-1@example.org' });
      const deadline = Date.now() + 10_000;
      while ((relay.attempts.get('waiting@w.example') ?? 0) < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      await drained(db);
      expect((await db.pool.query(`select state from outbox where list_id = $1`, [list.id])).rows).toEqual([{ state: 'queued' }]);
      await db.pool.query('delete from lists where id = $1', [list.id]);
      expect((await db.pool.query(`select count(*)::int as n from outbox where list_id = $1`, [list.id])).rows[0].n).toBe(0);
    } finally {
      relay.setRule(null);
    }
  });
});
