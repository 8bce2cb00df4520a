/* Delivery counters, on the shared registry served at /metrics. */

import client from 'prom-client';
import { registry } from '../metrics.ts';

export const deliveries = new client.Counter({
  name: 'listkeeper_deliveries_total',
  help: 'Outbound copies by result (sent, deferred, failed)',
  labelNames: ['result'],
  registers: [registry],
});
