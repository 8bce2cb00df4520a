import { Router } from 'express';
import type { WebContext } from '../app.ts';

export function adminRouter(_ctx: WebContext): Router {
  return Router();
}
