import type { Request } from 'express';

/**
 * Who is looking at a page. Set on the request by the session middleware (web/session.ts);
 * null for anonymous readers. Archive and admin routes decide access from this alone.
 */
export interface Viewer {
  accountId: number;
  /** the account's primary address (what the audit log and the pages name it by) */
  email: string;
  /** all its verified addresses, the primary first: membership and roles count for any of them */
  emails: string[];
  isSiteAdmin: boolean;
}

declare module 'express-serve-static-core' {
  interface Request {
    viewer?: Viewer | null;
  }
}

export function viewerOf(req: Request): Viewer | null {
  return req.viewer ?? null;
}
