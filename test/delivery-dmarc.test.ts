import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createList, updateDeliverySettings } from '../src/db/lists.ts';
import { addMember } from '../src/db/members.ts';
import { setResolvers } from '../src/dns.ts';
import { dmarcPolicyFor } from '../src/delivery/dmarc-lookup.ts';
import type { DeliveryWorker } from '../src/delivery/worker.ts';
import { log } from '../src/log.ts';
import { parse } from '../src/mail/parse.ts';
import { drained, startCaptureRelay, startWorker, workerConfig, type CaptureRelay } from './helpers/capture-relay.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { message, sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';

/**
 * DMARC lookups of delivery (src/delivery/dmarc-lookup.ts) through setResolvers: a DNS failure
 * mitigates and is not cached, "no record" is kept an hour and a record a day, the organisational
 * domain comes from the Public Suffix List; and the modes end to end over a real SMTP relay.
 */

let db: TestDatabase;
let relay: CaptureRelay;
let smtp: RunningIngest;
let worker: DeliveryWorker;
const asked: string[] = [];
let records: Record<string, string> = {};
let failing = new Set<string>();

beforeAll(async () => {
  db = await testDatabase();
  relay = await startCaptureRelay();
  smtp = await startIngest(db.pool);
  worker = await startWorker(db, workerConfig(relay));
});

afterEach(() => {
  asked.length = 0;
  records = {};
  failing = new Set();
});

afterAll(async () => {
  setResolvers();
  await worker?.stop();
  await smtp?.stop();
  await relay?.stop();
  await db?.drop();
});

setResolvers({
  txt: async (name) => {
    asked.push(name);
    if (failing.has(name)) throw Object.assign(new Error('server failure'), { code: 'ESERVFAIL' });
    if (records[name]) return [[records[name]]];
    throw Object.assign(new Error('no such name'), { code: 'ENOTFOUND' });
  },
});

const age = (domain: string, interval: string) => db.pool.query(`update dmarc_policies set fetched_at = now() - $2::interval where domain = $1`, [domain, interval]);

describe('DMARC lookups', () => {
  it('finds the organisational record on the Public Suffix List: mail.gmx.de asks _dmarc.gmx.de', async () => {
    records = { '_dmarc.gmx.de': 'v=DMARC1; p=reject; sp=quarantine' };
    expect(await dmarcPolicyFor(db.pool, 'mail.gmx.de', log)).toBe('quarantine');
    expect(asked).toEqual(['_dmarc.mail.gmx.de', '_dmarc.gmx.de']);
    asked.length = 0;
    records = { '_dmarc.bar.co.uk': 'v=DMARC1; p=reject' };
    expect(await dmarcPolicyFor(db.pool, 'foo.bar.co.uk', log)).toBe('reject');
    expect(asked).toEqual(['_dmarc.foo.bar.co.uk', '_dmarc.bar.co.uk']);
  });

  it('counts a DNS failure as temperror, which mitigates, and does not cache it', async () => {
    failing = new Set(['_dmarc.flaky.example']);
    expect(await dmarcPolicyFor(db.pool, 'flaky.example', log)).toBe('temperror');
    const { rows } = await db.pool.query(`select * from dmarc_policies where domain = 'flaky.example'`);
    expect(rows).toEqual([]);
    failing = new Set();
    records = { '_dmarc.flaky.example': 'v=DMARC1; p=none' };
    expect(await dmarcPolicyFor(db.pool, 'flaky.example', log)).toBe('none');
  });

  it('keeps "no record" for an hour and a found record for a day', async () => {
    expect(await dmarcPolicyFor(db.pool, 'quiet.example', log)).toBe('none');
    records = { '_dmarc.quiet.example': 'v=DMARC1; p=reject', '_dmarc.loud.example': 'v=DMARC1; p=reject' };
    expect(await dmarcPolicyFor(db.pool, 'loud.example', log)).toBe('reject');
    asked.length = 0;
    await age('quiet.example', '59 minutes');
    await age('loud.example', '23 hours');
    expect(await dmarcPolicyFor(db.pool, 'quiet.example', log)).toBe('none');
    expect(await dmarcPolicyFor(db.pool, 'loud.example', log)).toBe('reject');
    expect(asked).toEqual([]);
    // The domain published a record since: seen once "no record" is an hour old.
    await age('quiet.example', '61 minutes');
    expect(await dmarcPolicyFor(db.pool, 'quiet.example', log)).toBe('reject');
    expect(asked).toEqual(['_dmarc.quiet.example']);
    await age('loud.example', '25 hours');
    records = {};
    expect(await dmarcPolicyFor(db.pool, 'loud.example', log)).toBe('none');
  });
});

describe('DMARC modes over SMTP', () => {
  async function listIn(mode: 'munge_from' | 'munge_from_always' | 'wrap_message', local: string) {
    const list = await createList(db.pool, { address: `${local}@lists.example.org`, name: local, description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
    await addMember(db.pool, list.id, `reader@${local}.example`, 'each');
    await updateDeliverySettings(db.pool, list.id, { dmarc_mitigation: mode });
    return list;
  }

  async function sendAs(local: string, id: string, from: string) {
    const res = await sendRaw(smtp.port, { from: 'x@example.org', to: [`${local}@lists.example.org`] }, message({ id, from, to: `${local}@lists.example.org` }));
    expect(res.ok, res.response).toBe(true);
  }

  const copyOf = async (id: string) => (await relay.copy(null, `<${id}>`)).raw;

  it('mitigates a post whose author domain cannot be looked up (fail closed), and not one with no record', async () => {
    await listIn('munge_from', 'tf');
    failing = new Set(['_dmarc.broken.example']);
    await sendAs('tf', 'tf-1@example.org', 'Tim <tim@broken.example>');
    await sendAs('tf', 'tf-2@example.org', 'Nia <nia@norecord.example>');
    await drained(db);
    const broken = await parse(await copyOf('tf-1@example.org'));
    expect(broken.fromEmail).toBe('tf@lists.example.org');
    expect(broken.fromName).toBe('Tim via tf');
    expect(broken.headers.get('reply-to')).toEqual(['Tim <tim@broken.example>']);
    expect((await parse(await copyOf('tf-2@example.org'))).fromEmail).toBe('nia@norecord.example');
  });

  it('munges every post with munge_from_always, and wraps p=quarantine authors with wrap_message', async () => {
    await listIn('munge_from_always', 'always');
    await sendAs('always', 'always-1@example.org', 'Nia <nia@norecord.example>');
    await listIn('wrap_message', 'wrap');
    records = { '_dmarc.example.com': 'v=DMARC1; p=quarantine; pct=20' };
    await sendAs('wrap', 'wrap-1@example.org', 'Qin <qin@mail.example.com>');
    await sendAs('wrap', 'wrap-2@example.org', 'Nia <nia@norecord.example>');
    await drained(db);
    expect((await parse(await copyOf('always-1@example.org'))).fromName).toBe('Nia via always');
    const wrapped = await copyOf('wrap-1@example.org');
    const parsed = await parse(wrapped);
    expect(parsed.fromEmail).toBe('wrap@lists.example.org');
    expect(parsed.headers.get('content-type')).toEqual(['message/rfc822']);
    expect(wrapped.toString()).toContain('\r\n\r\nFrom: Qin <qin@mail.example.com>\r\n');
    expect((await parse(await copyOf('wrap-2@example.org'))).fromEmail).toBe('nia@norecord.example');
  });
});
