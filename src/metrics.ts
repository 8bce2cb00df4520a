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
