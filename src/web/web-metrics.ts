/* Counters of the web role, served at /metrics with the others (summed over web processes). */

import client from 'prom-client';
import { registry } from '../metrics.ts';

export const webRefusals = new client.Counter({
  name: 'listkeeper_web_refused_requests_total',
  help: 'Web requests answered 400 because of their input (bad encoding, NUL, a value PostgreSQL refused), by reason',
  labelNames: ['reason'],
  registers: [registry],
});

export const parsedMessageRequests = new client.Counter({
  name: 'listkeeper_parsed_message_requests_total',
  help: 'Message pages and attachments that needed a MIME parse: served from the parse cache (hit), by joining a parse in flight (shared), or by parsing (miss)',
  labelNames: ['result'],
  registers: [registry],
});

export const messageParses = new client.Counter({
  name: 'listkeeper_message_parses_total',
  help: 'MIME parses made for message pages and attachments, by where they ran: the parse thread (large messages) or the web process',
  labelNames: ['where'],
  registers: [registry],
});

export const afterResponseWork = new client.Counter({
  name: 'listkeeper_web_after_response_total',
  help: 'Work done after a response was sent (login links, password resets), by result',
  labelNames: ['result'],
  registers: [registry],
});

export const downloadsRunning = new client.Gauge({
  name: 'listkeeper_web_downloads',
  help: 'Heavy downloads being sent now (mbox months and threads, raw messages and attachments of 1 MB or more), each holding a slot of WEB_MAX_DOWNLOADS',
  registers: [registry],
});

export const downloadsRefused = new client.Counter({
  name: 'listkeeper_web_downloads_refused_total',
  help: 'Heavy downloads refused because every slot was taken: by reason, process (WEB_MAX_DOWNLOADS, answered 503) or client (the address had its 2 running, answered 429)',
  labelNames: ['reason'],
  registers: [registry],
});
