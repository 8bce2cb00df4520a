import express from 'express';
import type { Database } from '../db/database.ts';
import { log } from '../log.ts';
import { registry } from '../metrics.ts';

export interface WebContext {
  db: Database;
  publicUrl: string;
  mailDomain: string;
}

/** The HTTP app: health and metrics here; archive, subscription and admin routers mount below. */
export function createApp(ctx: WebContext): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', 'loopback');

  app.get('/healthz', async (_req, res) => {
    try {
      await ctx.db.pool.query('select 1');
      res.json({ status: 'ok', database: 'ok' });
    } catch (err) {
      log.warn({ err }, 'health check failed');
      res.status(503).json({ status: 'error', database: (err as Error).message });
    }
  });

  app.get('/metrics', async (_req, res) => {
    res.type(registry.contentType).send(await registry.metrics());
  });

  return app;
}
