import type { Request, Response } from 'express';
import type nunjucks from 'nunjucks';
import { csrfToken } from './csrf.ts';
import { viewerOf } from './viewer.ts';

/**
 * Renders a view with what every page needs: the viewer, a CSRF token for its forms. These are the
 * panel's, the account's and the forms' pages: someone's own, with a token in them, so nothing
 * keeps them (`no-store`, unless the route said otherwise): not a cache in front, and not the
 * browser, which would show an admin page again from its history after logging out on a shared
 * computer. (Archive pages have their own caching: archive/http.ts.)
 */
export function render(views: nunjucks.Environment, req: Request, res: Response, template: string, vars: Record<string, unknown> = {}, status = 200) {
  const html = views.render(template, { viewer: viewerOf(req), csrf: csrfToken(req, res), ...res.locals, ...vars });
  if (!res.get('Cache-Control')) res.set('Cache-Control', 'no-store');
  res.status(status).type('html').send(html);
}
