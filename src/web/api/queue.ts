/* /api/v1/queue: the outbound queue's status, as `listkeeper queue --json` prints it (core/queue-status.ts). */

import { Router } from 'express';
import { queueStatus } from '../../core/queue-status.ts';
import type { WebContext } from '../context.ts';
import { need } from './auth.ts';

export function queueApi(ctx: WebContext): Router {
  const r = Router();
  r.get('/queue', need('read'), async (_req, res) => {
    res.json(await queueStatus(ctx.db.pool, ctx.cfg));
  });
  return r;
}
