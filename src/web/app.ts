import path from 'node:path';
import { fileURLToPath } from 'node:url';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Config } from '../config.ts';
import { readUrls, type Database } from '../db/database.ts';
import { isAppError } from '../errors.ts';
import { log } from '../log.ts';
import { loginUrl } from '../mail/urls.ts';
import { liveness, readiness } from '../core/readiness.ts';
import { registry } from '../metrics.ts';
import { readGaugesFrom } from '../metrics-sources.ts';
import { adminRouter } from './admin/routes.ts';
import { apiErrorHandler } from './api/errors.ts';
import { apiRouter } from './api/routes.ts';
import type { PageCache } from './archive/page-cache.ts';
import { MembersOnly } from './archive/access.ts';
import { DownloadSlots } from './archive/download-slots.ts';
import type { DownloadLeases } from '../db/download-leases.ts';
import { ParsedMessages } from './archive/parsed-messages.ts';
import { archiveRouter } from './archive/routes.ts';
import type { WebContext } from './context.ts';
import { RETRY_AFTER_SECONDS, unavailableDatabase } from './database-faults.ts';
import { serverMetrics } from './processes.ts';
import { render } from './render.ts';
import { checkBody, checkUrl, formBody, refusedByDatabase } from './request-input.ts';
import { securityHeaders } from './security-headers.ts';
import { sessionMiddleware } from './session.ts';
import { freshReads } from './fresh-reads.ts';
import { subscriptionRouter } from './subscription-routes.ts';
import { createViews } from './views.ts';

const PUBLIC_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../public');

/**
 * The HTTP app. Routers mount in order: readers' archive, subscription links from mail, then the
 * accounts and admin panel. Health and metrics need no session. `pageCache` (owned by WebServer,
 * which starts and stops its LISTEN connection) serves public archive pages again;
 * `parsedMessages` (also WebServer's, which stops its parse thread) keeps parsed messages;
 * `downloadLeases` (WebServer's, which ends its connection) count a client's downloads on the site.
 */
export function createApp(db: Database, cfg: Config, opts: { pageCache?: PageCache; parsedMessages?: ParsedMessages; downloadLeases?: DownloadLeases } = {}): express.Express {
  const parsedMessages = opts.parsedMessages ?? new ParsedMessages(cfg.web.messageCacheMb * 1024 * 1024, readUrls(cfg, db.directUrl ?? db.url));
  const ctx: WebContext = { db, cfg, views: createViews(), pageCache: opts.pageCache, parsedMessages, downloads: new DownloadSlots(cfg.web.maxDownloads, opts.downloadLeases ?? null) };
  const app = express();
  app.disable('x-powered-by');
  // Whose X-Forwarded-For names the client, for the limits per client address and the logs: a
  // proxy on this machine by default; one elsewhere is named in WEB_TRUST_PROXY, or every client
  // would be that proxy, and one stranger could use up everyone's limits.
  app.set('trust proxy', cfg.web.trustProxy);
  app.set('etag', 'strong');
  // Before anything reads the URL: no route sees a path or query that is not clean UTF-8.
  app.use(checkUrl);

  // Up (the process answers and reaches its database: the answer it always gave), or with ?ready,
  // ready for traffic (core/readiness.ts). Both answer 503 within a deadline, never hang.
  // A load balancer asks every few seconds: a change of readiness is logged, not every answer.
  let wasReady = true;
  app.get('/healthz', async (req, res) => {
    // An answer of now: no cache in front may keep it (Varnish would for two minutes).
    res.set('Cache-Control', 'no-store');
    if (req.query.ready !== undefined) {
      const r = await readiness(db.pool, cfg.dataDir);
      if (r.ready !== wasReady) {
        if (r.ready) log.info('ready again');
        else log.warn({ checks: r.checks }, 'not ready');
        wasReady = r.ready;
      }
      res.status(r.ready ? 200 : 503).json({ status: r.ready ? 'ready' : 'not ready', checks: r.checks });
      return;
    }
    const live = await liveness(db.pool);
    res.status(live.status).json(live.body);
  });
  // With METRICS_PORT the figures are served on that listener only (src/metrics-server.ts).
  if (!cfg.metrics) {
    readGaugesFrom(db.pool);
    app.get('/metrics', async (_req, res) => {
      res.set('Cache-Control', 'no-store').type(registry.contentType).send(await serverMetrics());
    });
  }

  app.use(
    securityHeaders({
      contentSecurityPolicy: {
        directives: {
          'default-src': ["'self'"], 'img-src': ["'self'", 'data:'], 'style-src': ["'self'", "'unsafe-inline'"], 'script-src': ["'self'"], 'form-action': ["'self'"], 'frame-ancestors': ["'none'"],
          // Only a site served over https may ask browsers to upgrade: over plain http the upgraded
          // stylesheet and form URLs point at a port that does not speak TLS, and every page breaks.
          'upgrade-insecure-requests': cfg.publicUrl.startsWith('https:') ? [] : null,
        },
      },
      crossOriginEmbedderPolicy: false,
    }),
  );
  // The REST API before the pages' body parser, session and CSRF: under /api only a bearer token
  // counts, no cookie is read (api/auth.ts).
  app.use('/api', apiRouter(ctx));
  app.use('/static', express.static(PUBLIC_DIR, { maxAge: '1h' }));
  app.use(freshReads(ctx));
  // The session first: how large a form may be depends on whether its sender is logged in.
  app.use(sessionMiddleware(ctx));
  app.use(formBody());
  app.use(checkBody);

  app.use(subscriptionRouter(ctx));
  app.use(archiveRouter(ctx));
  app.use(adminRouter(ctx));

  app.use((req, res) => render(ctx.views, req, res, 'error.njk', { title: 'Not found', message: 'There is no page at this address.' }, 404));
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    // What checkUrl refuses before the API's router runs is answered in the API's JSON too. By the
    // path: an absolute-form request line (GET http://host/api/v1/… HTTP/1.1, which HTTP/1.1
    // allows and some proxies send) keeps its scheme and host in originalUrl, and got the HTML page.
    if (req.path.startsWith('/api/')) return apiErrorHandler(err, req, res, _next);
    err = refusedByDatabase(req, err) ?? unavailableDatabase(req, err) ?? err;
    if (err instanceof MembersOnly) {
      // Not a dead end: log in and come back here, or subscribe.
      return render(ctx.views, req, res, 'archive/members-only.njk', { title: 'Members only', message: err.message, list: err.list, loginHref: loginUrl(req.originalUrl) }, err.status);
    }
    if (isAppError(err)) {
      if (err.status === 503) res.set('Retry-After', String(RETRY_AFTER_SECONDS));
      return render(ctx.views, req, res, 'error.njk', { title: err.status === 503 ? 'Try again later' : 'Error', message: err.message }, err.status);
    }
    const status = (err as { status?: number }).status;
    if (status && status >= 400 && status < 500) {
      return render(ctx.views, req, res, 'error.njk', { title: 'Bad request', message: (err as Error).message }, status);
    }
    log.error({ err, url: req.originalUrl }, 'web request failed');
    res.status(500).type('text/plain').send('Internal error\n');
  });
  return app;
}
