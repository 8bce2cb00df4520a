/* /api/v1/queue: the outbound queue's status, as `listkeeper queue --json` prints it. */

import { Router } from 'express';
import { queueStats } from '../../db/outbox.ts';
import { redactSecrets } from '../../log.ts';
import type { WebContext } from '../context.ts';
import { need } from './auth.ts';

export function queueApi(ctx: WebContext): Router {
  const r = Router();
  r.get('/queue', need('read'), async (_req, res) => {
    const stats = await queueStats(ctx.db.pool, ctx.cfg.delivery.leaseSeconds);
    // An error text may quote a URL with its password (a relay's message, a misconfiguration).
    if (stats.oldest?.last_error) stats.oldest.last_error = redactSecrets(stats.oldest.last_error);
    res.json(stats);
  });
  return r;
}
