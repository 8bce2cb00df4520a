/*
 * METRICS_PORT: /metrics and /healthz on a listener of their own. A process without the web role
 * (`serve --worker`, `serve --smtp`) has no other way to be scraped, and with the web role this
 * keeps the figures off the public port (the web app then answers 404 for /metrics). Plain
 * node:http, so a worker does not load express for it.
 */

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type pg from 'pg';
import { liveness } from './core/readiness.ts';
import { log } from './log.ts';
import { registry } from './metrics.ts';
import { readGaugesFrom } from './metrics-sources.ts';

export interface MetricsServer {
  address: AddressInfo;
  stop(): Promise<void>;
}

/** `metrics` gives the text to serve: this process's registry, or its web processes' added up. */
export async function startMetricsServer(pool: pg.Pool, host: string, port: number, metrics: () => Promise<string> = () => registry.metrics()): Promise<MetricsServer> {
  readGaugesFrom(pool);
  const server = http.createServer((req, res) => void answer(pool, metrics, req, res));
  // Scrapers keep connections open; a stop must not wait for them, nor a slow client hold one.
  server.requestTimeout = 10_000;
  server.headersTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    address: server.address() as AddressInfo,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function answer(pool: pg.Pool, metrics: () => Promise<string>, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const send = (status: number, type: string, body: string, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', ...headers });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
  const path = (req.url ?? '/').split('?')[0];
  if (path !== '/metrics' && path !== '/healthz') return send(404, 'text/plain; charset=utf-8', 'Not found: this listener serves /metrics and /healthz.\n');
  if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain; charset=utf-8', 'Only GET and HEAD.\n', { allow: 'GET, HEAD' });
  if (path === '/healthz') {
    const live = await liveness(pool);
    return send(live.status, 'application/json', JSON.stringify(live.body));
  }
  try {
    send(200, registry.contentType, await metrics());
  } catch (err) {
    log.error({ err }, 'metrics could not be collected');
    send(500, 'text/plain; charset=utf-8', 'The metrics could not be collected; the log says why.\n');
  }
}
