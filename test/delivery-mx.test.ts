import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createList, type ListRow } from '../src/db/lists.ts';
import { addMember } from '../src/db/members.ts';
import { setResolvers } from '../src/dns.ts';
import { MxTransport } from '../src/delivery/transport.ts';
import type { DeliveryWorker } from '../src/delivery/worker.ts';
import { log } from '../src/log.ts';
import { startWorker, workerConfig } from './helpers/capture-relay.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { attemptedRows, outboxRowsOf } from './helpers/outbox-rows.ts';
import { startScriptedRelay, type ScriptedRelay } from './helpers/scripted-relay.ts';
import { postTo, startIngest, type RunningIngest } from './helpers/smtp.ts';
import { LOOPBACK_SPF, stubResolvers, type StubRecords } from './helpers/stub-dns.ts';
import { until } from './helpers/worker-process.ts';

/**
 * Direct delivery to MX hosts, against the owner of a member's domain: its DNS and its servers
 * are theirs. The scripted relay on loopback stands for every MX host (DELIVERY_MX_PORT); DNS is
 * stubbed in the process.
 */
let db: TestDatabase;
let smtp: RunningIngest;
let relay: ScriptedRelay;
let worker: DeliveryWorker | undefined;
const dns = new Map<string, StubRecords>();

async function listWith(local: string, members: string[]): Promise<ListRow> {
  const list = await createList(db.pool, { address: `${local}@lists.example.org`, name: local, description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  for (const m of members) await addMember(db.pool, list.id, m, 'each');
  return list;
}

const post = (local: string, id: string) => postTo(smtp.port, local, id);

const rowsOf = (id: string) => outboxRowsOf(db.pool, id);

/** Every row of the post has had its first attempt (or is done). */
const attempted = (id: string) => attemptedRows(db.pool, id);

function direct(env: Record<string, string> = {}) {
  return workerConfig(relay, { RELAY_URL: '', DELIVERY_MX_PORT: String(relay.port), ...env });
}

beforeAll(async () => {
  db = await testDatabase();
  smtp = await startIngest(db.pool);
  relay = await startScriptedRelay();
  setResolvers(stubResolvers(dns, { defaultSpf: LOOPBACK_SPF }));
});

afterEach(async () => {
  await worker?.stop();
  worker = undefined;
  relay.setScript({});
});

afterAll(async () => {
  setResolvers();
  await smtp?.stop();
  await relay?.stop();
  await db?.drop();
});

describe('MX hosts at addresses that are not public', () => {
  it('are never connected to: loopback by IP literal, by name, as IPv4-mapped IPv6, private and link-local', async () => {
    dns.set('literal.example', { mx: [{ exchange: '127.0.0.1', priority: 10 }] });
    dns.set('named.example', { mx: [{ exchange: 'mx.named.example', priority: 10 }] });
    dns.set('mx.named.example', { a: ['127.0.0.1'] });
    dns.set('mapped.example', { mx: [{ exchange: 'mx.mapped.example', priority: 10 }] });
    dns.set('mx.mapped.example', { aaaa: ['::ffff:127.0.0.1'] });
    dns.set('inside.example', { mx: [{ exchange: 'a.inside.example', priority: 10 }, { exchange: 'b.inside.example', priority: 20 }] });
    dns.set('a.inside.example', { a: ['10.0.0.5'] });
    dns.set('b.inside.example', { a: ['169.254.169.254'] });
    dns.set('nomx.example', { a: ['127.0.0.2'] }); // no MX: the domain itself
    const members = ['m@literal.example', 'm@named.example', 'm@mapped.example', 'm@inside.example', 'm@nomx.example'];
    await listWith('private', members);
    const before = relay.sessions();
    worker = await startWorker(db, direct());
    await post('private', 'private-1@example.org');
    const rows = await attempted('private-1@example.org');
    expect(relay.sessions()).toBe(before);
    expect(rows.map((r) => r.state)).toEqual(['queued', 'queued', 'queued', 'queued', 'queued']);
    const errors = Object.fromEntries(rows.map((r) => [r.recipient, r.last_error]));
    expect(errors['m@literal.example']).toContain('127.0.0.1 is 127.0.0.1, not a public address');
    expect(errors['m@named.example']).toContain('mx.named.example is 127.0.0.1, not a public address');
    expect(errors['m@mapped.example']).toContain('mx.mapped.example is ::ffff:127.0.0.1, not a public address');
    expect(errors['m@inside.example']).toContain('a.inside.example is 10.0.0.5, not a public address');
    expect(errors['m@inside.example']).toContain('b.inside.example is 169.254.169.254, not a public address');
    expect(errors['m@nomx.example']).toContain('nomx.example is 127.0.0.2, not a public address');
  });

  it('are connected to when DELIVERY_MX_ALLOW names their network, at the address looked up', async () => {
    dns.set('allowed.example', { mx: [{ exchange: 'mx.allowed.example', priority: 10 }] });
    dns.set('mx.allowed.example', { a: ['127.0.0.1'] });
    await listWith('allowed', ['m@allowed.example']);
    worker = await startWorker(db, direct({ DELIVERY_MX_ALLOW: 'loopback' }));
    await post('allowed', 'allowed-1@example.org');
    await until(() => relay.delivered.some((d) => d.to.includes('m@allowed.example')), 'the copy');
    // Its result is written a moment after the relay has it.
    await until(async () => (await rowsOf('allowed-1@example.org')).every((r) => r.state === 'sent'), 'the copy recorded as sent');
  });

  it('are never connected to at an address DELIVERY_MX_DENY names (this machine\'s behind a NAT), though allowed', async () => {
    // 127.0.0.60 stands for the NAT's public address that forwards to this machine.
    const self = await startScriptedRelay({}, { host: '127.0.0.60', port: relay.port });
    try {
      dns.set('nat.example', { mx: [{ exchange: 'mx.nat.example', priority: 10 }] });
      dns.set('mx.nat.example', { a: ['127.0.0.60'] });
      await listWith('nat', ['m@nat.example']);
      worker = await startWorker(db, direct({ DELIVERY_MX_ALLOW: 'loopback', DELIVERY_MX_DENY: '127.0.0.60' }));
      await post('nat', 'nat-1@example.org');
      const [row] = await attempted('nat-1@example.org');
      expect(self.sessions()).toBe(0);
      expect(row.state).toBe('queued');
      expect(row.last_error).toContain('mx.nat.example is 127.0.0.60, named in DELIVERY_MX_DENY');
    } finally {
      await self.stop();
    }
  });
});

/** Servers on 127.0.0.FIRST… that accept TCP on one port and never say a word. */
async function blackHoles(first: number, count: number): Promise<{ port: number; connections: () => number; stop: () => Promise<void> }> {
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const servers: net.Server[] = [];
  let port = 0;
  for (let i = 0; i < count; i++) {
    const server = net.createServer((s) => {
      connections++;
      sockets.add(s);
      s.on('error', () => undefined);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, `127.0.0.${first + i}`, () => resolve());
    });
    port = (server.address() as net.AddressInfo).port;
    servers.push(server);
  }
  return {
    port,
    connections: () => connections,
    async stop() {
      for (const s of sockets) s.destroy();
      await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
    },
  };
}

describe('a domain with many MX hosts, each silent', () => {
  it('costs a copy a few connection attempts within one deadline, not one timeout per MX record', async () => {
    const holes = await blackHoles(2, 20);
    try {
      dns.set('many.example', { mx: Array.from({ length: 20 }, (_, i) => ({ exchange: `mx${i}.many.example`, priority: 10 + i })) });
      for (let i = 0; i < 20; i++) dns.set(`mx${i}.many.example`, { a: [`127.0.0.${2 + i}`] });
      await listWith('many', ['m@many.example']);
      worker = await startWorker(db, direct({ DELIVERY_MX_PORT: String(holes.port), DELIVERY_MX_ALLOW: 'loopback', DELIVERY_TIMEOUT_SECONDS: '1' }));
      const started = Date.now();
      await post('many', 'many-1@example.org');
      const [row] = await attempted('many-1@example.org');
      expect(row.state).toBe('queued');
      expect(row.last_error).toMatch(/127\.0\.0\.\d+/);
      // Lease 2 s: the copy may take 1.3 s. One timeout per record was 20 connections and 20 s.
      expect(holes.connections()).toBeLessThanOrEqual(5);
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      await holes.stop();
    }
  });
});

describe('an MX host that takes the message and never answers its end', () => {
  it('holds one connection for one deadline; its other copies are deferred at once, and another domain\'s member is not kept waiting', async () => {
    const tarpit = await startScriptedRelay({ stall: 'dot' });
    const fast = await startScriptedRelay({}, { host: '127.0.0.2', port: tarpit.port });
    try {
      dns.set('slow.example', { mx: [{ exchange: '127.0.0.1', priority: 10 }] });
      dns.set('zz-fast.example', { mx: [{ exchange: '127.0.0.2', priority: 10 }] });
      // Sorted by domain, the slow domain's copies come first in the batch.
      const slow = Array.from({ length: 12 }, (_, i) => `m${String(i).padStart(2, '0')}@slow.example`);
      await listWith('tarpit', [...slow, 'last@zz-fast.example']);
      worker = await startWorker(db, direct({ DELIVERY_MX_PORT: String(tarpit.port), DELIVERY_MX_ALLOW: 'loopback', DELIVERY_TIMEOUT_SECONDS: '1', DELIVERY_DATA_DONE_TIMEOUT_SECONDS: '1', DELIVERY_DOMAIN_CONNECTIONS: '1' }));
      await post('tarpit', 'tarpit-1@example.org');
      await until(() => fast.delivered.some((d) => d.to.includes('last@zz-fast.example')), 'the copy to the other domain');
      // One copy per connection to the tarpit, each waiting out the deadline, was 12 sessions
      // (and 12 deadlines) before the other domain's member got theirs.
      expect(tarpit.sessions()).toBeLessThanOrEqual(3);
      const rows = await attempted('tarpit-1@example.org');
      expect(rows.filter((r) => r.recipient.endsWith('@slow.example')).map((r) => r.state)).toEqual(slow.map(() => 'queued'));
      expect(rows.find((r) => r.recipient === 'm05@slow.example')!.last_error).toMatch(/timeout|ETIMEDOUT/i);
      expect(tarpit.delivered).toEqual([]);
    } finally {
      await fast.stop();
      await tarpit.stop();
    }
  });
});

describe('an MX host that takes the message and then gives no reply to its end', () => {
  it('is not sent the copy again on a fresh connection when it hangs up after the end of data', async () => {
    const host = await startScriptedRelay({}, { host: '127.0.0.42', port: relay.port });
    log.level = 'silent';
    const transport = new MxTransport(direct({ DELIVERY_MX_ALLOW: 'loopback', DELIVERY_LEASE_SECONDS: '10', LOG_LEVEL: 'silent' }), log);
    const send = (to: string) => transport.send('hangup.example', { from: 'bounces@lists.example.org', to }, Buffer.from(`Subject: ${to}\r\n\r\nhi\r\n`));
    try {
      dns.set('hangup.example', { mx: [{ exchange: '127.0.0.42', priority: 10 }] });
      expect((await send('a@hangup.example')).ok).toBe(true);
      host.setScript({ hangUp: 'dot' });
      // On the first copy's connection, reused: a connection lost before the message went is
      // tried again on a fresh one, but not this.
      const result = await send('b@hangup.example');
      expect(result).toMatchObject({ ok: false, temporary: true });
      expect(!result.ok && result.response).toMatch(/may have been delivered/);
      expect(host.commands.filter((c) => c === 'DATA')).toHaveLength(2);
      expect(host.sessions()).toBe(1);
    } finally {
      transport.close();
      await host.stop();
    }
  });
});

describe('shutdown while an MX host has the message and has not answered its end', () => {
  it('records the copy as perhaps delivered, though another MX host is left to try', async () => {
    const host = await startScriptedRelay({ stall: 'dot' }, { host: '127.0.0.43', port: relay.port });
    log.level = 'silent';
    const transport = new MxTransport(direct({ DELIVERY_MX_ALLOW: 'loopback', LOG_LEVEL: 'silent' }), log);
    try {
      dns.set('cut.example', { mx: [{ exchange: '127.0.0.43', priority: 10 }, { exchange: '127.0.0.44', priority: 20 }] });
      const sending = transport.send('cut.example', { from: 'bounces@lists.example.org', to: 'a@cut.example' }, Buffer.from('Subject: cut\r\n\r\nhi\r\n'));
      await until(() => host.commands.at(-1) === 'DATA', 'the message handed over');
      await new Promise((r) => setTimeout(r, 200));
      transport.abort();
      const result = await sending;
      expect(result).toMatchObject({ ok: false, temporary: true, maybeDelivered: true });
      expect(!result.ok && result.response).toMatch(/ESHUTDOWN.*may have been delivered/);
    } finally {
      transport.close();
      await host.stop();
    }
  });
});

describe('an MX host that answers slowly, within the deadlines', () => {
  it('takes no more of a worker\'s lanes than its connections: another domain\'s copy goes at once, the slow domain\'s go in order, each once', async () => {
    // Addresses no other test's copies (retried meanwhile by this worker) go to.
    const slowHost = await startScriptedRelay({ delayMs: 150 }, { host: '127.0.0.30' });
    const fast = await startScriptedRelay({}, { host: '127.0.0.31', port: slowHost.port });
    const busy = () => slowHost.delivered.filter((d) => d.to[0].endsWith('@busy.example'));
    try {
      dns.set('busy.example', { mx: [{ exchange: '127.0.0.30', priority: 10 }] });
      dns.set('zz-idle.example', { mx: [{ exchange: '127.0.0.31', priority: 10 }] });
      // Sorted by domain, the slow domain's copies come first in the batch.
      const slow = Array.from({ length: 6 }, (_, i) => `m${i}@busy.example`);
      await listWith('busy', [...slow, 'last@zz-idle.example']);
      // Four lanes, one connection per MX host. Lease 10 s: no copy is cut while it waits.
      worker = await startWorker(db, direct({ DELIVERY_MX_PORT: String(slowHost.port), DELIVERY_MX_ALLOW: 'loopback', DELIVERY_DOMAIN_CONNECTIONS: '1', DELIVERY_LEASE_SECONDS: '10' }));
      await post('busy', 'busy-1@example.org');
      await until(() => fast.delivered.some((d) => d.to.includes('last@zz-idle.example')), 'the copy to the other domain');
      // Every lane used to queue for the slow host's one connection, and the other domain's copy
      // was taken only once the slow domain's last copy had a lane: after three of them were sent.
      expect(busy().length).toBeLessThanOrEqual(1);
      await until(() => busy().length === slow.length, 'the slow domain\'s copies', 20_000);
      expect(busy().map((d) => d.to)).toEqual(slow.map((m) => [m]));
      expect(slowHost.sessions()).toBe(1);
      expect(fast.delivered.filter((d) => d.to[0].endsWith('@zz-idle.example')).map((d) => d.to)).toEqual([['last@zz-idle.example']]);
      await until(async () => (await rowsOf('busy-1@example.org')).every((r) => r.state === 'sent'), 'every row sent');
    } finally {
      await fast.stop();
      await slowHost.stop();
    }
  });
});

describe('copies waiting in the batch for a busy host', () => {
  it('do not keep the worker from claiming mail queued meanwhile: a later post to another host goes before them', async () => {
    // Addresses no other test's copies (retried meanwhile by this worker) go to.
    const slowHost = await startScriptedRelay({ delays: { dot: 1_500 } }, { host: '127.0.0.40' });
    const other = await startScriptedRelay({}, { host: '127.0.0.41', port: slowHost.port });
    const waiting = () => slowHost.delivered.filter((d) => d.to[0].endsWith('@queue.example'));
    try {
      dns.set('queue.example', { mx: [{ exchange: '127.0.0.40', priority: 10 }] });
      dns.set('later.example', { mx: [{ exchange: '127.0.0.41', priority: 10 }] });
      const queued = Array.from({ length: 4 }, (_, i) => `m${i}@queue.example`);
      await listWith('queue', queued);
      await listWith('later', ['m@later.example']);
      // One connection per host: three of the four copies wait in the batch for the first's lane.
      worker = await startWorker(db, direct({ DELIVERY_MX_PORT: String(slowHost.port), DELIVERY_MX_ALLOW: 'loopback', DELIVERY_DOMAIN_CONNECTIONS: '1', DELIVERY_LEASE_SECONDS: '10' }));
      await post('queue', 'queue-1@example.org');
      await until(() => slowHost.commands.at(-1)?.toUpperCase() === 'DATA', 'the first copy handed over');
      await post('later', 'later-1@example.org');
      await until(() => other.delivered.some((d) => d.to.includes('m@later.example')), 'the later post\'s copy', 20_000);
      // While the busy host's copies waited, not once the batch had emptied (after three of them).
      expect(waiting().length).toBeLessThanOrEqual(1);
      await until(() => waiting().length === queued.length, 'the busy host\'s copies', 20_000);
      expect(waiting().map((d) => d.to)).toEqual(queued.map((m) => [m]));
    } finally {
      await other.stop();
      await slowHost.stop();
    }
  });
});

describe('domains whose MX records name the same host', () => {
  it('take no more of a worker\'s lanes together than the host\'s connections: another host\'s copy goes at once', async () => {
    // Addresses no other test's copies (retried meanwhile by this worker) go to.
    const shared = await startScriptedRelay({ delayMs: 150 }, { host: '127.0.0.50' });
    const other = await startScriptedRelay({}, { host: '127.0.0.51', port: shared.port });
    try {
      // Four domains (as many as the worker's lanes), one MX host, as gmail.com and googlemail.com.
      const domains = ['a-shared.example', 'b-shared.example', 'c-shared.example', 'd-shared.example'];
      for (const d of domains) dns.set(d, { mx: [{ exchange: 'mx.shared.example', priority: 5 }, { exchange: 'alt.shared.example', priority: 10 }] });
      dns.set('mx.shared.example', { a: ['127.0.0.50'] });
      dns.set('zz-other.example', { mx: [{ exchange: '127.0.0.51', priority: 10 }] });
      // Sorted by domain, the shared host's copies come first in the batch.
      const members = domains.flatMap((d) => [`m1@${d}`, `m2@${d}`]);
      await listWith('shared', [...members, 'last@zz-other.example']);
      // Four lanes, one connection per MX host. Lease 10 s: no copy is cut while it waits.
      worker = await startWorker(db, direct({ DELIVERY_MX_PORT: String(shared.port), DELIVERY_MX_ALLOW: 'loopback', DELIVERY_DOMAIN_CONNECTIONS: '1', DELIVERY_LEASE_SECONDS: '10' }));
      await post('shared', 'shared-1@example.org');
      await until(() => other.delivered.some((d) => d.to.includes('last@zz-other.example')), 'the copy to the other host');
      // Each domain took a lane of its own, all four queued for the host's one connection, and the
      // other host's copy waited until every copy for the shared host had been taken.
      expect(shared.delivered.length).toBeLessThanOrEqual(1);
      await until(() => shared.delivered.length === members.length, 'the shared host\'s copies', 20_000);
      expect(shared.sessions()).toBe(1);
      expect(shared.delivered.map((d) => d.to[0]).sort()).toEqual([...members].sort());
      await until(async () => (await rowsOf('shared-1@example.org')).every((r) => r.state === 'sent'), 'every row sent');
    } finally {
      await other.stop();
      await shared.stop();
    }
  });
});

describe('MX answers and per-address pools', () => {
  it('are forgotten once unused for a while, never while a send uses the pool, and made again when needed', async () => {
    const hosts = [relay, await startScriptedRelay({}, { host: '127.0.0.3', port: relay.port }), await startScriptedRelay({ delayMs: 100 }, { host: '127.0.0.4', port: relay.port })];
    const cfg = direct({ DELIVERY_MX_ALLOW: 'loopback', DELIVERY_DOMAIN_CONNECTIONS: '1', DELIVERY_LEASE_SECONDS: '10', LOG_LEVEL: 'silent' });
    log.level = 'silent';
    // Minutes in production; a fraction of a second here.
    const transport = new MxTransport(cfg, log, { sweepMs: 50, poolIdleMs: 300, mxCacheMs: 300, connectionIdleMs: 100 });
    const send = (to: string) => transport.send(to.split('@')[1], { from: 'bounces@lists.example.org', to }, Buffer.from(`Subject: ${to}\r\n\r\nhi\r\n`));
    try {
      ['127.0.0.1', '127.0.0.3', '127.0.0.4'].forEach((a, i) => dns.set(`prune${i}.example`, { mx: [{ exchange: a, priority: 10 }] }));
      dns.set('prune3.example', { mx: [{ exchange: '127.0.0.1', priority: 10 }] }); // shares 127.0.0.1's pool
      const first = await Promise.all(['a@prune0.example', 'a@prune1.example', 'a@prune3.example'].map(send));
      expect(first.map((r) => r.ok)).toEqual([true, true, true]);
      expect(transport.cached).toEqual({ domains: 3, pools: 2 });
      // A slow host, one connection: its second copy waits in the pool for seconds, far past
      // poolIdleMs, while the sweep runs; neither is cut.
      const slow = await Promise.all(['a@prune2.example', 'b@prune2.example'].map(send));
      expect(slow.map((r) => r.ok)).toEqual([true, true]);
      expect(hosts[2].delivered.map((d) => d.to)).toEqual([['a@prune2.example'], ['b@prune2.example']]);
      await until(() => transport.cached.domains === 0 && transport.cached.pools === 0, 'the answers and pools forgotten', 5_000);
      const before = hosts[1].sessions();
      expect((await send('c@prune1.example')).ok).toBe(true);
      expect(hosts[1].sessions()).toBe(before + 1);
      expect(transport.cached).toEqual({ domains: 1, pools: 1 });
    } finally {
      transport.close();
      await hosts[1].stop();
      await hosts[2].stop();
    }
  });
});
