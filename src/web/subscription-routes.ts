import { Router } from 'express';
import type { WebContext } from './app.ts';

export function subscriptionRouter(_ctx: WebContext): Router {
  return Router();
}
