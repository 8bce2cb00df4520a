/*
 * Accounts, self-service and the admin panel. Each page family is its own router; every /admin
 * route checks the viewer's role on the server (auth/guards.ts) and every form carries a CSRF token.
 *
 *   /login, /logout, /login/link/TOKEN, /login/reset[/TOKEN]   auth/routes.ts
 *   /account                                                    account/routes.ts
 *   /lists/LIST/subscribe                                       subscribe-form.ts
 *   /admin/, /admin/dashboard, /admin/audit                     dashboard.ts
 *   /admin/lists/new, /admin/lists/LIST/{,settings,roles,delete,audit}   lists.ts
 *   /admin/lists/LIST/held[/ID], /admin/lists/LIST/senders        held.ts
 *   /admin/lists/LIST/requests                                  requests.ts
 *   /admin/lists/LIST/members[.csv,/add,/bulk,/EMAIL]           members.ts
 *   /admin/lists/LIST/messages[/hide,/unhide]                   messages.ts
 *   /admin/tokens[/ID/revoke]                                   tokens.ts (REST API tokens)
 */

import { Router } from 'express';
import type { WebContext } from '../context.ts';
import { accountRouter } from '../account/routes.ts';
import { authRouter } from '../auth/routes.ts';
import { subscribeRouter } from '../subscribe-form.ts';
import { requireLogin } from '../auth/guards.ts';
import { dashboardRouter } from './dashboard.ts';
import { heldRouter } from './held.ts';
import { listsRouter } from './lists.ts';
import { membersRouter } from './members.ts';
import { messagesRouter } from './messages.ts';
import { requestsRouter } from './requests.ts';
import { tokensRouter } from './tokens.ts';

export function adminRouter(ctx: WebContext): Router {
  const r = Router();
  r.use(authRouter(ctx));
  r.use(accountRouter(ctx));
  r.use(subscribeRouter(ctx));
  r.use(dashboardRouter(ctx));
  r.use(listsRouter(ctx));
  r.use(heldRouter(ctx));
  r.use(requestsRouter(ctx));
  r.use(membersRouter(ctx));
  r.use(messagesRouter(ctx));
  r.use(tokensRouter(ctx));
  // Anything else under /admin: anonymous visitors still go to the login page first.
  r.use('/admin', requireLogin);
  return r;
}
