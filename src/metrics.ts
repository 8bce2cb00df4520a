import client from 'prom-client';

/** The Prometheus registry and the counters every part shares; served at /metrics. */
export const registry = new client.Registry();
client.collectDefaultMetrics({ register: registry });

export const smtpMessages = new client.Counter({
  name: 'listkeeper_smtp_messages_total',
  help: 'Messages received over SMTP/LMTP, per recipient, by result',
  labelNames: ['result'],
  registers: [registry],
});

export const pageCacheRequests = new client.Counter({
  name: 'listkeeper_page_cache_requests_total',
  help: 'Anonymous archive page requests by whether the page cache served them (hit) or not (miss)',
  labelNames: ['result'],
  registers: [registry],
});
