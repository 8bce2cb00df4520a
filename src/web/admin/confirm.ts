/*
 * The page in front of every destructive action (discard, ban, remove, unsubscribe): it says what
 * will happen and to what, and its button POSTs the same form again with confirm=1 and the CSRF
 * token. Nothing happens before that second POST, and no JavaScript is needed.
 */

import type { Request, Response } from 'express';
import type { WebContext } from '../context.ts';
import { render } from '../render.ts';

export interface Confirmation {
  title: string;
  /** the admin tab to highlight; none on /account */
  tab?: string;
  heading: string;
  consequence: string;
  /** what the action takes, one line each (the first few), and how many are not shown */
  items: string[];
  count: number;
  more: number;
  button: string;
  /** where the confirm button POSTs, and the fields it sends again besides confirm=1 and _csrf */
  action: string;
  hidden: [string, string][];
  cancel: string;
}

export function confirmPage(ctx: WebContext, req: Request, res: Response, c: Confirmation, template = 'admin/confirm.njk'): void {
  render(ctx.views, req, res, template, { title: c.title, tab: c.tab, confirmation: c });
}
