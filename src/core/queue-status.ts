/*
 * What `listkeeper queue --json` prints and GET /api/v1/queue answers: the outbound queue by
 * state, the oldest waiting row, the workers, the background conversions and the purges waiting
 * for the cache in front. Error texts may quote a URL with its password (a relay's message, a
 * misconfiguration): they are redacted here, once for both.
 */

import type { Config } from '../config.ts';
import { conversionProgress } from '../db/conversions.ts';
import { queueStats } from '../db/outbox.ts';
import type { Queryable } from '../db/pool.ts';
import { purgeQueueStats } from '../db/purges.ts';
import { redactSecrets } from '../log.ts';

export async function queueStatus(db: Queryable, cfg: Pick<Config, 'delivery' | 'purge'>) {
  const stats = await queueStats(db, cfg.delivery.leaseSeconds);
  if (stats.oldest?.last_error) stats.oldest.last_error = redactSecrets(stats.oldest.last_error);
  const conversions = await conversionProgress(db);
  for (const c of conversions) {
    if (c.error) c.error = redactSecrets(c.error);
    if (c.last_skipped) c.last_skipped.error = redactSecrets(c.last_skipped.error);
  }
  const purges = await purgeQueueStats(db);
  if (purges.oldest?.last_error) purges.oldest.last_error = redactSecrets(purges.oldest.last_error);
  return { ...stats, conversions, purges: { url: cfg.purge.url ? redactSecrets(cfg.purge.url) : null, ...purges } };
}
