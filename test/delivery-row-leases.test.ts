import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createList } from '../src/db/lists.ts';
import { addMember } from '../src/db/members.ts';
import type { Envelope, SendResult, SevenBit } from '../src/delivery/smtp-pool.ts';
import { poolTimeouts, RelayTransport, relayTarget, type SendClock, type Transport } from '../src/delivery/transport.ts';
import { DeliveryWorker } from '../src/delivery/worker.ts';
import { log } from '../src/log.ts';
import { startWorker, workerConfig } from './helpers/capture-relay.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { outboxRowsOf } from './helpers/outbox-rows.ts';
import { startScriptedRelay, type ScriptedRelay } from './helpers/scripted-relay.ts';
import { postTo, startIngest, type RunningIngest } from './helpers/smtp.ts';
import { until } from './helpers/worker-process.ts';

/**
 * Each claimed row has its own lease, renewed by its worker's heartbeat while its send is within
 * its deadline (SendClock). One send stuck past its deadline loses its own row only: the worker's
 * other copies, a slow one waiting in time for the reply to its final dot among them, stay with it
 * and are never sent a second time by another worker.
 */
let db: TestDatabase;
let smtp: RunningIngest;
/** answers the final dot 8 s late: slow, within DELIVERY_DATA_DONE_TIMEOUT_SECONDS */
let slow: ScriptedRelay;
/** stops answering once the message is sent */
let silent: ScriptedRelay;
const workers: DeliveryWorker[] = [];

beforeAll(async () => {
  db = await testDatabase();
  smtp = await startIngest(db.pool);
  slow = await startScriptedRelay();
  silent = await startScriptedRelay();
});

afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.stop()));
});

afterAll(async () => {
  await smtp?.stop();
  await slow?.stop();
  await silent?.stop();
  await db?.drop();
});

async function listWith(local: string, members = 1): Promise<void> {
  const list = await createList(db.pool, { address: `${local}@lists.example.org`, name: local, description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  for (let i = 1; i <= members; i++) await addMember(db.pool, list.id, `m${i}@${local}.example`, 'each');
}

/**
 * Real relays behind one transport: the first copy for `hung.example` goes to the silent relay
 * with a deadline bug (its clock says the copy's usual deadline, but its session's timeouts are
 * ten minutes, so nothing cuts it when the clock runs out: a send truly stuck past its deadline);
 * every other copy goes to the slow relay, with the worker's own deadlines. As delivering
 * directly, each domain has one lane at most (host-lanes.ts).
 */
class HangingOnce implements Transport {
  readonly lanes = 4;
  readonly domainLanes = 1;
  private hung = false;
  constructor(private readonly normal: Transport, private readonly broken: Transport, private readonly copyMs: number) {}

  send(domain: string, envelope: Envelope, message: Buffer, sevenBit?: SevenBit, clock?: SendClock): Promise<SendResult> {
    if (domain !== 'hung.example' || this.hung) return this.normal.send(domain, envelope, message, sevenBit, clock);
    this.hung = true;
    if (clock) clock.at = performance.now() + this.copyMs;
    return this.broken.send(domain, envelope, message, sevenBit);
  }

  laneKey(domain: string): Promise<string> {
    return Promise.resolve(domain);
  }

  close() {
    this.normal.close();
    this.broken.close();
  }

  abort() {
    this.normal.abort();
    this.broken.abort();
  }
}

const copiesAt = (relay: ScriptedRelay, local: string) => relay.delivered.flatMap((d) => d.to).filter((t) => t.endsWith(`@${local}.example`));

describe('a worker with one send stuck past its deadline', () => {
  it('loses that copy only: its slow copy in time stays with it and goes once, the stuck one and the one waiting behind it are sent by another worker', async () => {
    // Two members on the stuck host: the second waits in the batch for the host's one lane.
    await listWith('hung', 2);
    await listWith('patient');
    slow.setScript({ delays: { dot: 8_000 } });
    silent.setScript({ stall: 'dot' });
    const env = { DELIVERY_TIMEOUT_SECONDS: '1', DELIVERY_DATA_DONE_TIMEOUT_SECONDS: '20', DELIVERY_LEASE_SECONDS: '3' };
    const cfg = workerConfig(slow, env);
    log.level = cfg.logLevel;
    const ten = { stepMs: 600_000, dataDoneMs: 600_000, copyMs: 600_000 };
    const transport = new HangingOnce(
      new RelayTransport(relayTarget(cfg), 2, log, poolTimeouts(cfg)),
      new RelayTransport(relayTarget({ ...cfg, relayUrl: silent.url }), 1, log, ten),
      poolTimeouts(cfg).copyMs,
    );
    const first = new DeliveryWorker(db.pool, db.url, cfg, { name: 'first', transport });
    await first.start();
    workers.push(first);
    await postTo(smtp.port, 'hung', 'hung-1@example.org');
    await postTo(smtp.port, 'patient', 'patient-1@example.org');
    // Both copies handed over: one waits for the silent relay for ever, one for the slow relay's reply.
    await until(() => silent.commands.at(-1)?.toUpperCase() === 'DATA' && slow.commands.some((c) => c.toUpperCase() === 'RCPT TO:<M1@PATIENT.EXAMPLE>') && slow.commands.at(-1)?.toUpperCase() === 'DATA', 'both copies handed over');
    // Another worker, whose relay (the slow one) answers: it sends whatever the first loses.
    workers.push(await startWorker(db, workerConfig(slow, env), 'second'));

    const seen = new Set<string>();
    await until(async () => {
      const [row] = await outboxRowsOf(db.pool, 'patient-1@example.org');
      seen.add(`${row.state}:${row.locked_by}`);
      return row.state === 'sent';
    }, 'the slow copy to be sent', 30_000);
    // The slow copy was never taken from its worker, though that worker had a send stuck.
    expect([...seen].filter((s) => s !== 'sending:first')).toEqual(['sent:null']);
    // The stuck copy went back to the queue after its lease, and the one waiting behind it at
    // once (it was never sent): both were sent on sessions that answer.
    const hung = await until(async () => {
      const rows = await outboxRowsOf(db.pool, 'hung-1@example.org');
      return rows.every((r) => r.state === 'sent') && rows;
    }, 'the stuck copy and the one behind it to be sent', 40_000);
    expect(hung).toMatchObject([{ state: 'sent', attempts: 1, last_error: null }, { state: 'sent', attempts: 1, last_error: null }]);
    // The first worker is alive all along: its registration is fresh, its lock held.
    const { rows: live } = await db.pool.query<{ fresh: boolean }>(`select heartbeat_at > now() - interval '3 seconds' as fresh from delivery_workers where name = 'first'`);
    expect(live).toEqual([{ fresh: true }]);
    expect(first.holdsLock).toBe(true);
    await Promise.all(workers.splice(0).map((w) => w.stop()));
    expect(copiesAt(slow, 'patient')).toEqual(['m1@patient.example']);
    expect(copiesAt(slow, 'hung').sort()).toEqual(['m1@hung.example', 'm2@hung.example']);
    expect(copiesAt(silent, 'hung')).toEqual([]);
    expect(slow.commands.filter((c) => c.toUpperCase() === 'RCPT TO:<M1@PATIENT.EXAMPLE>')).toHaveLength(1);
  }, 90_000);
});
