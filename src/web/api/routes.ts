/*
 * The REST API under /api/v1 (docs/api.md): JSON in and out, a bearer token on every request but
 * the OpenAPI document. web/app.ts mounts this router before the body parsers, the session and
 * the CSRF check of the pages, so none of them runs here: no cookie is read or set under /api.
 *
 *   GET  /api/v1/openapi.json                          openapi.ts (no token)
 *   /api/v1/lists[/LIST]                               lists.ts
 *   /api/v1/lists/LIST/members[/EMAIL]                 members.ts
 *   /api/v1/lists/LIST/held[/ID[/approve|reject|discard]]  held.ts
 *   /api/v1/lists/LIST/rules[/PATTERN]                 rules.ts
 *   /api/v1/lists/LIST/messages/hide|unhide            messages.ts
 *   /api/v1/queue                                      queue.ts
 *   /api/v1/audit                                      audit.ts
 */

import express, { Router } from 'express';
import type { WebContext } from '../context.ts';
import { checkBody, verifyUtf8Body } from '../request-input.ts';
import { auditApi } from './audit.ts';
import { bearerAuth } from './auth.ts';
import { ApiRefusal, apiErrorHandler, sendError } from './errors.ts';
import { heldApi } from './held.ts';
import { listsApi } from './lists.ts';
import { membersApi } from './members.ts';
import { messagesApi } from './messages.ts';
import { openApiDocument } from './openapi.ts';
import { queueApi } from './queue.ts';
import { rulesApi } from './rules.ts';

export const API_BODY_LIMIT = '1mb';
// application/json, and its suffixed kinds (application/merge-patch+json for a PATCH).
const JSON_TYPES = ['application/json', 'application/*+json'];

export function apiRouter(ctx: WebContext): Router {
  const r = Router();
  const document = openApiDocument();
  r.get('/v1/openapi.json', (_req, res) => {
    res.json(document);
  });

  const v1 = Router();
  // Answers are about one token's view of the data: never stored by a shared cache.
  v1.use((_req, res, next) => {
    res.set('Cache-Control', 'no-store');
    // The base of the next page's URL in a Link header (sendPage): absolute, as GitHub's are.
    res.locals.publicUrl = ctx.cfg.publicUrl;
    next();
  });
  v1.use(bearerAuth(ctx));
  // A body is JSON, or nothing: a form or text body is refused rather than read as empty.
  v1.use((req, _res, next) => {
    const hasBody = Number(req.get('content-length') ?? 0) > 0 || req.get('transfer-encoding') !== undefined;
    if (hasBody && !req.is(JSON_TYPES)) throw new ApiRefusal(415, 'unsupported_media_type', 'Send the request body as JSON, with "Content-Type: application/json".');
    next();
  });
  v1.use(express.json({ limit: API_BODY_LIMIT, strict: false, type: JSON_TYPES, verify: verifyUtf8Body }));
  // Strings holding NUL, which no PostgreSQL text can store: a 400 (request-input.ts).
  v1.use(checkBody);
  v1.use(listsApi(ctx));
  v1.use(membersApi(ctx));
  v1.use(heldApi(ctx));
  v1.use(rulesApi(ctx));
  v1.use(messagesApi(ctx));
  v1.use(queueApi(ctx));
  v1.use(auditApi(ctx));
  r.use('/v1', v1);

  r.use((req, res) => sendError(res, 404, 'not_found', `There is no ${req.method} ${(req.baseUrl + req.path).slice(0, 200)} in this API: see /api/v1/openapi.json.`));
  r.use(apiErrorHandler);
  return r;
}
