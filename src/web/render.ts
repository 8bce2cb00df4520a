import type { Request, Response } from 'express';
import type nunjucks from 'nunjucks';
import { csrfToken } from './csrf.ts';
import { viewerOf } from './viewer.ts';

/** Renders a view with what every page needs: the viewer, a CSRF token for its forms. */
export function render(views: nunjucks.Environment, req: Request, res: Response, template: string, vars: Record<string, unknown> = {}, status = 200) {
  const html = views.render(template, { viewer: viewerOf(req), csrf: csrfToken(req, res), ...res.locals, ...vars });
  res.status(status).type('html').send(html);
}
