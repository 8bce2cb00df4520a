import { Router } from 'express';
import type { WebContext } from '../app.ts';

export function archiveRouter(_ctx: WebContext): Router {
  return Router();
}
