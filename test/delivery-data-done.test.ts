import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createList } from '../src/db/lists.ts';
import { addMember } from '../src/db/members.ts';
import type { DeliveryWorker } from '../src/delivery/worker.ts';
import { startWorker, workerConfig } from './helpers/capture-relay.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { outboxRowsOf } from './helpers/outbox-rows.ts';
import { startScriptedRelay, type ScriptedRelay } from './helpers/scripted-relay.ts';
import { postTo, startIngest, type RunningIngest } from './helpers/smtp.ts';
import { until } from './helpers/worker-process.ts';

/**
 * The reply to the final dot gets DELIVERY_DATA_DONE_TIMEOUT_SECONDS, not the per-step
 * DELIVERY_TIMEOUT_SECONDS (RFC 5321 §4.5.3.2.6: receivers scan the message before they answer),
 * and a worker waiting for it is alive: its heartbeat goes on, its row is not sent again by
 * another worker. A receiver that never answers is still cut, at that deadline, and so is one the
 * worker stops waiting for at shutdown; both say the copy may have been delivered.
 */
let db: TestDatabase;
let smtp: RunningIngest;
let relay: ScriptedRelay;
const workers: DeliveryWorker[] = [];

beforeAll(async () => {
  db = await testDatabase();
  smtp = await startIngest(db.pool);
  relay = await startScriptedRelay();
});

afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.stop()));
  relay.setScript({});
});

afterAll(async () => {
  await smtp?.stop();
  await relay?.stop();
  await db?.drop();
});

async function listWith(local: string, members: number): Promise<void> {
  const list = await createList(db.pool, { address: `${local}@lists.example.org`, name: local, description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  for (let i = 1; i <= members; i++) await addMember(db.pool, list.id, `m${i}@${local}.example`, 'each');
}

const copiesTo = (local: string) => relay.delivered.flatMap((d) => d.to).filter((t) => t.endsWith(`@${local}.example`));

/** The message and its final dot have reached the relay (it stalls or waits before answering). */
const handedOver = (local: string) => until(() => relay.commands.some((c) => c.toUpperCase() === `RCPT TO:<M1@${local.toUpperCase()}.EXAMPLE>`) && relay.commands.at(-1)?.toUpperCase() === 'DATA', `the copy for ${local} handed over`);

describe('a receiver that answers the final dot after longer than DELIVERY_TIMEOUT_SECONDS', () => {
  it('gets exactly one copy, and the row stays with the worker waiting for the reply until it is sent', async () => {
    await listWith('scans', 1);
    // The reply comes 8 s after the dot: eight per-step deadlines, more than two leases.
    relay.setScript({ delays: { dot: 8_000 } });
    const env = { DELIVERY_TIMEOUT_SECONDS: '1', DELIVERY_DATA_DONE_TIMEOUT_SECONDS: '12', DELIVERY_LEASE_SECONDS: '3' };
    workers.push(await startWorker(db, workerConfig(relay, env), 'first'), await startWorker(db, workerConfig(relay, env), 'second'));
    await postTo(smtp.port, 'scans', 'scans-1@example.org');
    const [claimed] = await until(async () => {
      const rows = await outboxRowsOf(db.pool, 'scans-1@example.org');
      return rows.length === 1 && rows[0].state === 'sending' && rows;
    }, 'a worker to claim the copy');
    const holder = claimed.locked_by;
    expect(['first', 'second']).toContain(holder);
    // Until it is sent, the row is the holder's alone: the other worker never takes it back.
    const seen = new Set<string>();
    const [row] = await until(async () => {
      const rows = await outboxRowsOf(db.pool, 'scans-1@example.org');
      seen.add(`${rows[0].state}:${rows[0].locked_by}`);
      return rows[0].state === 'sent' && rows;
    }, 'the copy to be sent', 30_000);
    expect([...seen].filter((s) => s !== `sending:${holder}`)).toEqual(['sent:null']);
    expect(row).toMatchObject({ state: 'sent', attempts: 1, last_error: null });
    // A lease more: a second copy, had another worker started one, would have sent its RCPT by now.
    await new Promise((r) => setTimeout(r, 3_000));
    expect(copiesTo('scans')).toEqual(['m1@scans.example']);
    expect(relay.commands.filter((c) => c.toUpperCase() === 'RCPT TO:<M1@SCANS.EXAMPLE>')).toHaveLength(1);
    const { rows: live } = await db.pool.query<{ name: string; fresh: boolean }>(
      `select name, heartbeat_at > now() - interval '3 seconds' as fresh from delivery_workers where name in ('first', 'second') order by name`);
    expect(live).toEqual([{ name: 'first', fresh: true }, { name: 'second', fresh: true }]);
  }, 60_000);
});

describe('while one copy waits minutes for the reply to its final dot', () => {
  it('the worker\'s other lanes go on claiming and sending what is queued meanwhile', async () => {
    await listWith('patient', 1);
    await listWith('meanwhile', 1);
    relay.setScript({ delays: { dot: 8_000 } });
    const env = { DELIVERY_TIMEOUT_SECONDS: '1', DELIVERY_DATA_DONE_TIMEOUT_SECONDS: '20', DELIVERY_LEASE_SECONDS: '30', DELIVERY_CONNECTIONS: '2' };
    workers.push(await startWorker(db, workerConfig(relay, env)));
    await postTo(smtp.port, 'patient', 'patient-1@example.org');
    await handedOver('patient');
    // New sessions answer at once; the first still waits for its reply.
    relay.setScript({});
    const posted = Date.now();
    await postTo(smtp.port, 'meanwhile', 'meanwhile-1@example.org');
    await until(async () => (await outboxRowsOf(db.pool, 'meanwhile-1@example.org'))[0]?.state === 'sent', 'the copy queued meanwhile to be sent', 20_000);
    // Before the slow reply came: the round did not wait for its one busy lane.
    expect(Date.now() - posted).toBeLessThan(6_000);
    expect((await outboxRowsOf(db.pool, 'patient-1@example.org'))[0].state).toBe('sending');
    await until(async () => (await outboxRowsOf(db.pool, 'patient-1@example.org'))[0].state === 'sent', 'the patient copy', 20_000);
    expect(copiesTo('patient')).toEqual(['m1@patient.example']);
    expect(copiesTo('meanwhile')).toEqual(['m1@meanwhile.example']);
  }, 60_000);
});

describe('a receiver that never answers the final dot', () => {
  it('is cut at DELIVERY_DATA_DONE_TIMEOUT_SECONDS, and the copy is deferred as perhaps delivered', async () => {
    await listWith('silent', 1);
    relay.setScript({ stall: 'dot' });
    // The copy's own deadline (two thirds of the lease, 20 s) is far: only the data-done one cuts it.
    workers.push(await startWorker(db, workerConfig(relay, { DELIVERY_TIMEOUT_SECONDS: '1', DELIVERY_DATA_DONE_TIMEOUT_SECONDS: '3', DELIVERY_LEASE_SECONDS: '30' })));
    await postTo(smtp.port, 'silent', 'silent-1@example.org');
    await handedOver('silent');
    const started = Date.now();
    const [row] = await until(async () => {
      const rows = await outboxRowsOf(db.pool, 'silent-1@example.org');
      return rows.length === 1 && rows[0].attempts > 0 && rows;
    }, 'the copy to be deferred', 20_000);
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(2_500);
    expect(waited).toBeLessThan(10_000);
    expect(row.state).toBe('queued');
    expect(row.last_error).toMatch(/ETIMEDOUT.*after the end of data: the copy may have been delivered/);
    expect(copiesTo('silent')).toEqual([]);
  }, 40_000);
});

describe('shutdown while a copy waits for the reply to its final dot', () => {
  it('waits for a reply that comes within the grace, and the copy is sent', async () => {
    await listWith('graceful', 1);
    relay.setScript({ delays: { dot: 2_000 } });
    const worker = await startWorker(db, workerConfig(relay, { DELIVERY_TIMEOUT_SECONDS: '1', DELIVERY_DATA_DONE_TIMEOUT_SECONDS: '600', DELIVERY_LEASE_SECONDS: '30' }));
    await postTo(smtp.port, 'graceful', 'graceful-1@example.org');
    await handedOver('graceful');
    await worker.stop();
    expect(await outboxRowsOf(db.pool, 'graceful-1@example.org')).toMatchObject([{ state: 'sent', attempts: 1, locked_by: null }]);
    expect(copiesTo('graceful')).toEqual(['m1@graceful.example']);
  }, 30_000);

  it('records a copy cut after the grace as perhaps delivered, not as never sent', async () => {
    await listWith('cutoff', 1);
    relay.setScript({ stall: 'dot' });
    const worker = await startWorker(db, workerConfig(relay, { DELIVERY_TIMEOUT_SECONDS: '1', DELIVERY_DATA_DONE_TIMEOUT_SECONDS: '600', DELIVERY_LEASE_SECONDS: '30' }));
    await postTo(smtp.port, 'cutoff', 'cutoff-1@example.org');
    await handedOver('cutoff');
    const started = Date.now();
    await worker.stop();
    expect(Date.now() - started).toBeLessThan(10_000);
    const [row] = await outboxRowsOf(db.pool, 'cutoff-1@example.org');
    expect(row).toMatchObject({ state: 'queued', attempts: 1, locked_by: null });
    expect(row.last_error).toMatch(/ESHUTDOWN: delivery is shutting down.*the copy may have been delivered/);
  }, 30_000);
});
