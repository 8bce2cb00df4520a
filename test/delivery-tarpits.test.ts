import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createList } from '../src/db/lists.ts';
import { addMember } from '../src/db/members.ts';
import { setResolvers } from '../src/dns.ts';
import type { DeliveryWorker } from '../src/delivery/worker.ts';
import { startWorker, workerConfig } from './helpers/capture-relay.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { outboxRowsOf } from './helpers/outbox-rows.ts';
import { startScriptedRelay, type ScriptedRelay } from './helpers/scripted-relay.ts';
import { postTo, startIngest, type RunningIngest } from './helpers/smtp.ts';
import { LOOPBACK_SPF, stubResolvers, type StubRecords } from './helpers/stub-dns.ts';
import { until } from './helpers/worker-process.ts';

/**
 * Tarpits, delivering directly: MX hosts that take the message and hold the reply to its final
 * dot (for up to DELIVERY_DATA_DONE_TIMEOUT_SECONDS, ten minutes by default). Each host has its
 * own limit of lanes, but many tarpit domains held every lane of a worker; now hosts not known to
 * answer quickly take half the lanes at most, and mail to hosts known to be quick goes on.
 */
let db: TestDatabase;
let smtp: RunningIngest;
let quick: ScriptedRelay;
const pits: ScriptedRelay[] = [];
let worker: DeliveryWorker | undefined;
const dns = new Map<string, StubRecords>();

beforeAll(async () => {
  db = await testDatabase();
  smtp = await startIngest(db.pool);
  // Addresses no other test file's MX hosts use; one port for all (DELIVERY_MX_PORT).
  quick = await startScriptedRelay({}, { host: '127.0.0.91' });
  // Each answers the final dot 6 s late: six DELIVERY_TIMEOUT_SECONDS, within the data-done one.
  for (let i = 2; i <= 5; i++) pits.push(await startScriptedRelay({ delays: { dot: 6_000 } }, { host: `127.0.0.9${i}`, port: quick.port }));
  setResolvers(stubResolvers(dns, { defaultSpf: LOOPBACK_SPF }));
});

afterEach(async () => {
  await worker?.stop();
  worker = undefined;
});

afterAll(async () => {
  setResolvers();
  await smtp?.stop();
  await quick?.stop();
  for (const p of pits) await p.stop();
  await db?.drop();
});

async function listWith(local: string, members: string[]): Promise<void> {
  const list = await createList(db.pool, { address: `${local}@lists.example.org`, name: local, description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  for (const m of members) await addMember(db.pool, list.id, m, 'each');
}

const handedOver = (relay: ScriptedRelay) => relay.commands.at(-1)?.toUpperCase() === 'DATA';

describe('copies to many tarpit domains', () => {
  it('hold half the lanes at most: mail to a host known to answer quickly goes on, and every tarpit copy is sent once, later', async () => {
    dns.set('zz-quick.example', { mx: [{ exchange: '127.0.0.91', priority: 10 }] });
    const pitDomains = pits.map((_, i) => `aa-pit${i + 1}.example`);
    pitDomains.forEach((d, i) => dns.set(d, { mx: [{ exchange: `127.0.0.9${i + 2}`, priority: 10 }] }));
    await listWith('quick', ['m1@zz-quick.example']);
    // Sorted by domain, the tarpits' copies come first in the batch.
    await listWith('pits', pitDomains.map((d) => `m@${d}`));
    // Four lanes, one per host: the tarpits, four domains, could take all four.
    worker = await startWorker(db, workerConfig(quick, {
      RELAY_URL: '', DELIVERY_MX_PORT: String(quick.port), DELIVERY_MX_ALLOW: 'loopback', DELIVERY_CONNECTIONS: '4', DELIVERY_DOMAIN_CONNECTIONS: '1',
      DELIVERY_TIMEOUT_SECONDS: '1', DELIVERY_DATA_DONE_TIMEOUT_SECONDS: '20', DELIVERY_LEASE_SECONDS: '30',
    }));
    // The quick host is known to the worker once it has answered a copy.
    await postTo(smtp.port, 'quick', 'quick-1@example.org');
    await until(async () => (await outboxRowsOf(db.pool, 'quick-1@example.org'))[0]?.state === 'sent', 'the first copy to the quick host');

    await postTo(smtp.port, 'pits', 'pits-1@example.org');
    await until(() => pits.filter(handedOver).length >= 2, 'two tarpits holding a copy');
    await postTo(smtp.port, 'quick', 'quick-2@example.org');
    await until(() => quick.delivered.some((d) => d.raw.includes('quick-2@example.org')), 'the copy to the quick host', 30_000);
    // It went while the tarpits still held their copies; they had the worker's lanes but two.
    expect(pits.flatMap((p) => p.delivered)).toEqual([]);
    expect(pits.reduce((n, p) => n + p.sessions(), 0)).toBe(2);
    // The two copies that found no lane were deferred, not failed, saying why.
    const deferred = await until(async () => {
      const rows = (await outboxRowsOf(db.pool, 'pits-1@example.org')).filter((r) => r.last_error !== null);
      return rows.length === 2 && rows;
    }, 'the copies left without a lane to be deferred');
    for (const r of deferred) {
      expect(r.state).not.toBe('failed');
      expect(r.last_error).toMatch(/^4\.4\.5 not tried: aa-pit\d\.example's mail hosts are not known to answer quickly, and 2 of this worker's lanes already wait on slow hosts/);
    }
    // Once the tarpits answer, the deferred copies go too: each member gets one copy.
    await until(async () => (await outboxRowsOf(db.pool, 'pits-1@example.org')).every((r) => r.state === 'sent'), 'every tarpit copy sent', 60_000);
    await worker.stop();
    expect(pits.map((p) => p.delivered.flatMap((d) => d.to))).toEqual(pitDomains.map((d) => [`m@${d}`]));
    expect(quick.delivered.flatMap((d) => d.to)).toEqual(['m1@zz-quick.example', 'm1@zz-quick.example']);
  }, 90_000);
});
