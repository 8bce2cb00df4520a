/*
 * The web role on several cores (WEB_PROCESSES > 1). Node answers requests on one thread, so one
 * `serve` process forks that many web processes (node:cluster): they share the listening socket
 * and the primary hands each new connection to the next one. Each process has its own pools and
 * page cache; the database stays the only shared state. The primary keeps the other roles (SMTP,
 * delivery), starts a new web process when one dies, and stops them all on shutdown.
 *
 * /metrics asks the primary, which adds up every process's registry (its own included), so a
 * scrape sees the whole server whichever process answers it.
 */

import cluster, { type Worker } from 'node:cluster';
import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import client from 'prom-client';
import { log } from '../log.ts';
import { registry } from '../metrics.ts';

// realpath: run from the launcher's compiled copy, bin/ is a link to the checkout's (bin/compiled.js).
const BIN = fs.realpathSync(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/listkeeper.js'));
const WEB_PROCESS_ENV = 'LISTKEEPER_WEB_PROCESS';
const RESTART_DELAY_MS = 1000;
const STOP_TIMEOUT_MS = 15_000;
const METRICS_TIMEOUT_MS = 2000;

type RegistryJson = client.MetricObjectWithValues<client.MetricValue<string>>[];
/** Messages between the primary and its web processes. */
type Ipc =
  | { lk: 'metrics?'; id: number }
  | { lk: 'metrics'; id: number; text: string }
  | { lk: 'registry?'; id: number }
  | { lk: 'registry'; id: number; json: RegistryJson };

const isIpc = (m: unknown): m is Ipc => typeof m === 'object' && m !== null && typeof (m as { lk?: unknown }).lk === 'string';

/** Whether this process is one of the web processes a `serve` primary forked. */
export function isWebProcess(): boolean {
  return cluster.isWorker && process.env[WEB_PROCESS_ENV] === '1';
}

/** The primary's side: forks, restarts and stops the web processes; answers their /metrics. */
export class WebProcesses {
  private workers = new Set<Worker>();
  private stopping = false;
  private nextId = 0;

  /** `env` is added to each process's environment (the database URL the primary resolved). */
  constructor(private count: number, private env: Record<string, string>) {}

  /** Resolves with the shared address once every process listens; if one cannot, stops them all. */
  async start(): Promise<AddressInfo> {
    cluster.setupPrimary({ exec: BIN, args: ['serve', '--web'] });
    try {
      const addrs = await Promise.all(Array.from({ length: this.count }, () => this.fork()));
      return addrs[0];
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  private fork(): Promise<AddressInfo> {
    const worker = cluster.fork({ ...this.env, [WEB_PROCESS_ENV]: '1' });
    this.workers.add(worker);
    worker.on('message', (m: unknown) => {
      if (isIpc(m) && m.lk === 'metrics?') void this.allMetrics().then((text) => worker.send({ lk: 'metrics', id: m.id, text } satisfies Ipc), () => undefined);
    });
    const listening = new Promise<AddressInfo>((resolve, reject) => {
      worker.once('listening', (addr) => resolve({ address: addr.address ?? '127.0.0.1', port: addr.port, family: addr.addressType === 6 ? 'IPv6' : 'IPv4' }));
      worker.once('exit', (code) => reject(new Error(`a web process exited (code ${code}) before it listened`)));
    });
    worker.once('exit', (code, signal) => {
      this.workers.delete(worker);
      if (this.stopping) return;
      log.error({ pid: worker.process.pid, code, signal }, 'web process died; starting another');
      setTimeout(() => {
        if (!this.stopping) this.fork().catch((err) => log.error({ err }, 'web process failed to start'));
      }, RESTART_DELAY_MS).unref();
    });
    return listening;
  }

  /** Every process's metrics added up (counters summed; see metrics.ts for the gauges). */
  async allMetrics(): Promise<string> {
    const own = await registry.getMetricsAsJSON();
    const theirs = await Promise.all([...this.workers].map((w) => this.registryOf(w)));
    const all = [own, ...theirs.filter((j): j is RegistryJson => j !== null)];
    return client.AggregatorRegistry.aggregate(all).metrics();
  }

  private registryOf(worker: Worker): Promise<RegistryJson | null> {
    const id = ++this.nextId;
    return new Promise((resolve) => {
      const done = (json: RegistryJson | null) => {
        clearTimeout(timer);
        worker.off('message', onMessage);
        resolve(json);
      };
      const onMessage = (m: unknown) => {
        if (isIpc(m) && m.lk === 'registry' && m.id === id) done(m.json);
      };
      // A process that is busy dying does not hold up the scrape.
      const timer = setTimeout(() => done(null), METRICS_TIMEOUT_MS);
      worker.on('message', onMessage);
      if (!worker.isConnected() || !worker.send({ lk: 'registry?', id } satisfies Ipc)) done(null);
    });
  }

  /** SIGTERM to each process (it finishes its requests in flight), SIGKILL if it hangs. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(
      [...this.workers].map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.isDead()) return resolve();
            const timer = setTimeout(() => w.process.kill('SIGKILL'), STOP_TIMEOUT_MS);
            w.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            w.process.kill('SIGTERM');
          }),
      ),
    );
  }
}

/**
 * The web process's side: answers the primary's requests for its registry, and exits with the
 * primary (`onOrphaned`, when the IPC channel closes).
 */
export function joinPrimary(onOrphaned: () => void) {
  listenToPrimary();
  process.on('disconnect', onOrphaned);
}

// Metrics asked of the primary, by request id, until it answers.
const pending = new Map<number, (text: string) => void>();
let lastId = 0;
let listening = false;

/** One listener for what the primary sends: its requests for the registry, its metrics answers. */
function listenToPrimary() {
  if (listening) return;
  listening = true;
  process.on('message', (m: unknown) => {
    if (!isIpc(m)) return;
    if (m.lk === 'registry?') {
      void registry.getMetricsAsJSON().then((json) => process.send?.({ lk: 'registry', id: m.id, json } satisfies Ipc));
    } else if (m.lk === 'metrics') {
      const resolve = pending.get(m.id);
      pending.delete(m.id);
      resolve?.(m.text);
    }
  });
}

/** The whole server's metrics in the Prometheus text format, from any process. */
export async function serverMetrics(): Promise<string> {
  if (!isWebProcess() || !process.send) return registry.metrics();
  // A scrape may come before serve() has joined the primary.
  listenToPrimary();
  const id = ++lastId;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      pending.delete(id);
      reject(new Error('the serve process did not answer for metrics'));
    }, METRICS_TIMEOUT_MS * 2);
    pending.set(id, (text) => {
      clearTimeout(timer);
      resolve(text);
    });
    process.send!({ lk: 'metrics?', id } satisfies Ipc);
  });
}
