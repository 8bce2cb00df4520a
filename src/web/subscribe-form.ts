/*
 * /lists/LIST/subscribe: web subscription with double opt-in. It resists subscription bombing:
 * nothing is subscribed until the address owner follows the mailed link; confirmation mails are
 * rate-limited per IP and per address (over the address limit nothing more is sent, silently);
 * and the answer is the same whether or not the address is already subscribed. A private list is
 * not there for those who may not read its archive (404, GET and POST alike), as on its archive
 * pages: they could not learn from this form that it exists, nor use it.
 *
 * A logged-in visitor who subscribes one of their account's verified addresses has already proved
 * it is theirs: no confirmation mail, the list's policy decides at once (subscribed, or a request
 * for its owners when the policy is "approve"). Any other address takes the mailed path.
 *
 * The form on the list page (/lists/LIST/) carries no CSRF token for anonymous readers, so that a
 * shared cache can keep that page: posted, it comes back here filled in, with a token, and only
 * that form subscribes (docs/operations.md "Caching behind a proxy").
 */

import { Router, type Request } from 'express';
import { listForReader } from '../db/archive.ts';
import { InvalidInput, NotFound } from '../errors.ts';
import type { DeliveryMode } from '../list-policies.ts';
import { allowHit, clientKey } from '../db/rate-limits.ts';
import { normalizeEmail } from '../mail/address.ts';
import { log } from '../log.ts';
import type { WebContext } from './context.ts';
import { csrfValid, requireCsrf } from './csrf.ts';
import { sessionIdOf } from './session.ts';
import { render } from './render.ts';
import { field } from './admin/form.ts';
import type pg from 'pg';
import type { ListRow } from '../db/lists.ts';
import { requestWebSubscription, subscribeVerifiedAddress } from '../core/subscriptions.ts';
import { readerOf } from './archive/access.ts';
import { viewerOf } from './viewer.ts';

const LIMITS = { perIp: 10, perEmail: 3, windowSeconds: 24 * 3600 };

/** The list a subscribe URL names, as far as this visitor may know of it. */
async function subscribableList(db: pg.Pool, req: Request): Promise<ListRow> {
  const ref = String(req.params.list);
  const list = await listForReader(db, ref, readerOf(viewerOf(req)));
  if (!list || (list.archive === 'private' && !list.readable)) throw new NotFound('There is no list at this address.', 'no_such_list');
  if (list.matches > 1) throw new InvalidInput(`"${ref}" names more than one list: use its full address`, 'ambiguous_list');
  return list;
}

export function subscribeRouter(ctx: WebContext): Router {
  const r = Router();
  const db = ctx.db.pool;

  r.get('/lists/:list/subscribe', async (req, res) => {
    const list = await subscribableList(db, req);
    render(ctx.views, req, res, 'subscribe/form.njk', { title: `Subscribe to ${list.name}`, list, email: req.viewer?.email ?? '', own: req.viewer?.emails ?? [] });
  });

  r.post('/lists/:list/subscribe', async (req, res, next) => {
    if (csrfValid(req, res)) return next();
    // The list page's form carries no token for an anonymous reader: that page is the same for
    // all of them, kept by a shared cache (views/archive/list.njk). Its post gets this form back,
    // filled in and with the visitor's own token, and nothing is done until that one is sent.
    // A post with a token that does not match (an expired form, another site's), or from a
    // logged-in visitor, is refused as everywhere.
    const tokenSent = typeof req.body?._csrf === 'string' || req.get('x-csrf-token') !== undefined;
    if (tokenSent || sessionIdOf(req) !== null) return requireCsrf(req, res, next);
    // A browser that says the form was this site's own page is believed: no page can make a
    // browser say so of a cross-site post (Sec-Fetch-Site and Origin are set by the browser, not
    // the page), so the visitor subscribes with one press, as before. Without that word (an older
    // browser, a script, another site's form) the form comes back with the visitor's token.
    if (fromOwnPage(req, ctx.cfg.publicUrl)) return next();
    const list = await subscribableList(db, req);
    render(ctx.views, req, res, 'subscribe/form.njk', {
      title: `Subscribe to ${list.name}`, list, email: field(req, 'email', 254), name: field(req, 'name', 200), own: [], confirm: true,
    });
  }, async (req, res) => {
    const list = await subscribableList(db, req);
    const email = normalizeEmail(field(req, 'email', 254));
    const name = field(req, 'name', 200) || undefined;
    const mode: DeliveryMode = field(req, 'mode') === 'digest' ? 'digest' : 'each';
    const viewer = viewerOf(req);
    const vars = { title: `Subscribe to ${list.name}`, list, email: field(req, 'email', 254), name: name ?? '', own: viewer?.emails ?? [] };
    if (!email) return render(ctx.views, req, res, 'subscribe/form.njk', { ...vars, error: 'Enter a valid e-mail address.' }, 400);
    if (!(await allowHit(db, `subscribe:ip:${clientKey(req.ip)}`, LIMITS.perIp, LIMITS.windowSeconds))) {
      return render(ctx.views, req, res, 'subscribe/form.njk', { ...vars, error: 'Too many subscription requests from your network today. Try again tomorrow, or subscribe by mail.' }, 429);
    }
    if (viewer?.emails.includes(email)) {
      const outcome = await subscribeVerifiedAddress(db, list, email, { name, mode, actor: viewer.email, settings: ctx.cfg });
      return render(ctx.views, req, res, 'subscribe/done.njk', { ...vars, email, outcome });
    }
    // A filled-in honeypot (a field people never see) is a robot: answer as usual, send nothing.
    const robot = field(req, 'website') !== '';
    const underLimit = await allowHit(db, `subscribe:email:${email}`, LIMITS.perEmail, LIMITS.windowSeconds);
    if (!robot && underLimit) {
      try {
        await requestWebSubscription(db, list, email, { name, mode, settings: ctx.cfg });
      } catch (err) {
        // Still the same answer: an error here must not reveal anything about the address.
        log.error({ err, list: list.address }, 'web subscription request failed');
      }
    }
    // What the person can still do when no mail comes: magicLink says whether a member without an account can log in.
    render(ctx.views, req, res, 'subscribe/sent.njk', { ...vars, email, magicLink: ctx.cfg.login.magicLink });
  });

  return r;
}

/**
 * Whether the browser says this post comes from a page of this very site: Fetch Metadata's
 * `Sec-Fetch-Site: same-origin`, or, from a browser without it, an `Origin` that is PUBLIC_URL's.
 * "same-site" is not enough (a sibling host of the domain may serve anyone's pages).
 */
function fromOwnPage(req: Request, publicUrl: string): boolean {
  const site = req.get('sec-fetch-site');
  if (site !== undefined) return site === 'same-origin';
  return req.get('origin') === new URL(publicUrl).origin;
}
