/* The Prometheus registry and the counters every part shares; served at /metrics. */

import client from 'prom-client';

export const registry = new client.Registry();
client.collectDefaultMetrics({ register: registry });

export const smtpMessages = new client.Counter({
  name: 'listkeeper_smtp_messages_total',
  help: 'Messages received over SMTP/LMTP, per recipient, by result',
  labelNames: ['result'],
  registers: [registry],
});

/** Reads meant for the replica (DATABASE_READ_URL) that went to the primary, by why (db/read-pool.ts). */
export const readFallbacks = new client.Counter({
  name: 'listkeeper_read_fallbacks_total',
  help: 'Archive reads sent to the primary instead of the read replica, by reason: unreachable (the replica is down), fresh (the reader has just written), recovery_conflict (the replica cancelled the read), lagging (the replica is more than DATABASE_READ_MAX_LAG behind)',
  labelNames: ['reason'],
  registers: [registry],
});

export const pageCacheRequests = new client.Counter({
  name: 'listkeeper_page_cache_requests_total',
  help: 'Anonymous archive page requests by whether the page cache served them (hit) or not (miss)',
  labelNames: ['result'],
  registers: [registry],
});

/** Posts the spam scanner did not answer for (SPAM_CHECK_URL), by why: timeout, connection, status, response. */
export const spamCheckFailures = new client.Counter({
  name: 'listkeeper_spam_check_failures_total',
  help: 'Spam checks that got no usable answer from rspamd, by reason (the post was then accepted unscanned or answered 451, as SPAM_CHECK_FAIL says)',
  labelNames: ['reason'],
  registers: [registry],
});

/** How long rspamd took to answer, to set SPAM_CHECK_TIMEOUT from. */
export const spamCheckSeconds = new client.Histogram({
  name: 'listkeeper_spam_check_seconds',
  help: 'Time rspamd took to scan a post (answered scans only)',
  buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  registers: [registry],
});

/** What the outbox gauges read at scrape time; set by the process that serves /metrics. */
export interface OutboxDepth {
  queued: number;
  sending: number;
  /** age of the oldest queued row, 0 when none waits */
  oldestQueuedSeconds: number;
}
let outboxDepthSource: (() => Promise<OutboxDepth>) | null = null;
let lastDepth: { at: number; value: Promise<OutboxDepth | null> } | null = null;

export function setOutboxDepthSource(fn: () => Promise<OutboxDepth>) {
  outboxDepthSource = fn;
  lastDepth = null;
}

/**
 * One query per scrape for both gauges (the registry collects them at the same time). A failed
 * query leaves the gauges as they were rather than failing the whole scrape.
 */
function outboxDepthNow(): Promise<OutboxDepth | null> | null {
  if (!outboxDepthSource) return null;
  if (!lastDepth || performance.now() - lastDepth.at > 1000) lastDepth = { at: performance.now(), value: outboxDepthSource().catch(() => null) };
  return lastDepth.value;
}

export const outboxRows = new client.Gauge({
  name: 'listkeeper_outbox_rows',
  help: 'Outbox rows waiting to be sent (queued) or being sent (sending), read at scrape time',
  labelNames: ['state'],
  registers: [registry],
  // Every web process reads the same outbox: several processes' answers are one figure, not a sum.
  aggregator: 'max',
  async collect() {
    const d = await outboxDepthNow();
    if (!d) return;
    this.set({ state: 'queued' }, d.queued);
    this.set({ state: 'sending' }, d.sending);
  },
});

export const outboxOldestQueued = new client.Gauge({
  name: 'listkeeper_outbox_oldest_queued_seconds',
  help: 'Age of the oldest queued outbox row (0 when none): alert on this rather than on depth',
  registers: [registry],
  aggregator: 'max',
  async collect() {
    const d = await outboxDepthNow();
    if (d) this.set(d.oldestQueuedSeconds);
  },
});

/** What the conversion gauges read at scrape time (db/conversions.ts); set by the process that serves /metrics. */
export interface ConversionGauge {
  name: string;
  rows_done: number;
  total_estimate: number | null;
  done_at: Date | null;
  rows_skipped: number;
}
let conversionSource: (() => Promise<ConversionGauge[]>) | null = null;
let lastConversions: { at: number; value: Promise<ConversionGauge[] | null> } | null = null;

export function setConversionSource(fn: () => Promise<ConversionGauge[]>) {
  conversionSource = fn;
  lastConversions = null;
}

/** One query per scrape for both conversion gauges; a failed one leaves them as they were. */
function conversionsNow(): Promise<ConversionGauge[] | null> | null {
  if (!conversionSource) return null;
  if (!lastConversions || performance.now() - lastConversions.at > 1000) lastConversions = { at: performance.now(), value: conversionSource().catch(() => null) };
  return lastConversions.value;
}

export const conversionRows = new client.Gauge({
  name: 'listkeeper_conversion_rows',
  help: 'Background conversion jobs (sql/0056): rows looked at so far (done), rows expected when the job started (estimate), and rows skipped because each failed alone (skipped), by job',
  labelNames: ['name', 'kind'],
  registers: [registry],
  aggregator: 'max',
  async collect() {
    const jobs = await conversionsNow();
    if (!jobs) return;
    for (const j of jobs) {
      this.set({ name: j.name, kind: 'done' }, j.rows_done);
      this.set({ name: j.name, kind: 'skipped' }, j.rows_skipped);
      if (j.total_estimate !== null) this.set({ name: j.name, kind: 'estimate' }, j.total_estimate);
    }
  },
});

export const conversionFinished = new client.Gauge({
  name: 'listkeeper_conversion_finished',
  help: 'Whether a background conversion job has finished (1) or still has rows to go (0), by job',
  labelNames: ['name'],
  registers: [registry],
  aggregator: 'max',
  async collect() {
    const jobs = await conversionsNow();
    if (!jobs) return;
    for (const j of jobs) this.set({ name: j.name }, j.done_at ? 1 : 0);
  },
});

/** Keys sent to the cache in front (PURGE_URL) by result: sent (it answered 2xx) or failed (retried later). */
export const purgeKeys = new client.Counter({
  name: 'listkeeper_purge_keys_total',
  help: 'Surrogate keys purged from the cache in front of the archive (PURGE_URL), by result: sent, failed (queued again with backoff); counted by the process running the worker role',
  labelNames: ['result'],
  registers: [registry],
});

/** What the purge queue gauges read at scrape time (db/purges.ts purgeDepth). */
export interface PurgeDepth {
  keys: number;
  oldestSeconds: number;
}
let purgeDepthSource: (() => Promise<PurgeDepth>) | null = null;
let lastPurgeDepth: { at: number; value: Promise<PurgeDepth | null> } | null = null;

export function setPurgeDepthSource(fn: () => Promise<PurgeDepth>) {
  purgeDepthSource = fn;
  lastPurgeDepth = null;
}

function purgeDepthNow(): Promise<PurgeDepth | null> | null {
  if (!purgeDepthSource) return null;
  if (!lastPurgeDepth || performance.now() - lastPurgeDepth.at > 1000) lastPurgeDepth = { at: performance.now(), value: purgeDepthSource().catch(() => null) };
  return lastPurgeDepth.value;
}

export const purgeQueueKeys = new client.Gauge({
  name: 'listkeeper_purge_queue_keys',
  help: 'Distinct surrogate keys waiting to be purged from the cache in front (PURGE_URL), read at scrape time',
  registers: [registry],
  aggregator: 'max',
  async collect() {
    const d = await purgeDepthNow();
    if (d) this.set(d.keys);
  },
});

export const purgeOldestQueued = new client.Gauge({
  name: 'listkeeper_purge_oldest_queued_seconds',
  help: 'Age of the oldest purge waiting for the cache in front (0 when none): the cache may serve pages this stale',
  registers: [registry],
  aggregator: 'max',
  async collect() {
    const d = await purgeDepthNow();
    if (d) this.set(d.oldestSeconds);
  },
});

/** Follow-ups of refused copies given up after failing, not transiently, every try (core/refusals.ts). */
export const refusalsGivenUp = new client.Counter({
  name: 'listkeeper_refusal_follow_ups_given_up_total',
  help: 'Follow-ups of copies refused for good (a bounce, a probe\'s disable, a too-big notice) given up after failing every try; the rows are in the table refusals_given_up and listkeeper doctor warns of them; counted by the process running the worker role',
  labelNames: ['follow_up'],
  registers: [registry],
});
