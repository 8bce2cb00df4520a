/*
 * Server-side access checks. Every admin route passes through one of these; pages only hide the
 * links a viewer may not follow, they never decide access.
 *
 * Roles, weakest first: moderator (held queue, hiding messages), owner (also settings, members,
 * moderators), site administrator (everything, on every list, and the site itself).
 */

import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { roleOnList, type ListRole } from '../../db/list-admin.ts';
import { listForReader } from '../../db/archive.ts';
import { findList, type ListRow } from '../../db/lists.ts';
import { Forbidden, InvalidInput, NotFound } from '../../errors.ts';
import { adminListUrl, loginUrl, reauthenticateUrl } from '../../mail/urls.ts';
import type { WebContext } from '../context.ts';
import { loggedInRecently } from '../session.ts';

export type Need = 'moderator' | 'owner' | 'admin';
export type EffectiveRole = ListRole | 'admin';

const RANK: Record<EffectiveRole, number> = { moderator: 1, owner: 2, admin: 3 };

/** Anonymous visitors are sent to the login page (303), with the way back. */
export function requireLogin(req: Request, res: Response, next: NextFunction) {
  if (!req.viewer) return res.redirect(303, loginUrl(req.originalUrl));
  next();
}

/**
 * For what would let a stolen session keep the account or a list after the owner has recovered
 * (the account's addresses and password, a list's owners and moderators, an API token): the
 * session must come from a login less than RECENT_LOGIN_MINUTES ago (db/sessions.ts), else the
 * person is sent to log in again (account/reauthenticate.ts), which returns to `returnTo`, and the
 * change is not made. After requireLogin (or a role check) and requireCsrf.
 */
export function requireRecentLoginThen(returnTo: (req: Request, res: Response) => string | null): RequestHandler {
  return (req, res, next) => {
    if (!req.viewer) return res.redirect(303, loginUrl(req.originalUrl));
    if (!loggedInRecently(req)) return res.redirect(303, reauthenticateUrl(returnTo(req, res)));
    next();
  };
}

/** requireRecentLoginThen, back to the account page: for the account's own addresses and password. */
export const requireRecentLogin = requireRecentLoginThen(() => null);

/** Site administrators and the owners and moderators of at least one list. */
export function requireStaff(req: Request, res: Response, next: NextFunction) {
  if (!req.viewer) return res.redirect(303, loginUrl(req.originalUrl));
  if (!req.viewer.isSiteAdmin && !res.locals.viewerIsModerator) throw new Forbidden('This page is for list owners, moderators and site administrators.');
  next();
}

export function requireSiteAdmin(req: Request, res: Response, next: NextFunction) {
  if (!req.viewer) return res.redirect(303, loginUrl(req.originalUrl));
  if (!req.viewer.isSiteAdmin) throw new Forbidden('This page is for site administrators.');
  next();
}

export interface ListAccess {
  list: ListRow;
  role: EffectiveRole;
  can: { moderate: boolean; manage: boolean; admin: boolean };
}

/**
 * Loads the list named by :list and checks that the viewer holds at least `need` on it. Sets
 * res.locals.list, .role and .can for the views, and returns nothing else: handlers read
 * listAccessOf(res).
 */
export function requireList(ctx: WebContext, need: Need): RequestHandler {
  return async (req, res, next) => {
    if (!req.viewer) return res.redirect(303, loginUrl(req.originalUrl));
    const list = await adminListFor(ctx, req.viewer, String(req.params.list));
    const role: EffectiveRole | null = req.viewer.isSiteAdmin ? 'admin' : await roleOnList(ctx.db.pool, list.id, req.viewer.emails);
    if (!role || RANK[role] < RANK[need]) {
      throw new Forbidden(need === 'admin' ? 'Only site administrators may do this.' : `You need to be ${need === 'owner' ? 'an owner' : 'a moderator or owner'} of ${list.address} to do this.`);
    }
    const access: ListAccess = { list, role, can: { moderate: true, manage: RANK[role] >= RANK.owner, admin: role === 'admin' } };
    Object.assign(res.locals, access, { listBase: adminListUrl(list.address) });
    next();
  };
}

/**
 * The list named by an /admin URL. A site administrator may name any list. Anyone else is
 * answered as the archive answers them: a private list they may not read is not there (the same
 * 404 as a list that does not exist, and not counted when a local part is ambiguous), so that
 * /admin/lists/NAME/ is no way to learn which private lists exist (a 403 told it, and an
 * ambiguous local part named every list that has it).
 */
async function adminListFor(ctx: WebContext, viewer: NonNullable<Request['viewer']>, ref: string): Promise<ListRow> {
  if (viewer.isSiteAdmin) return findList(ctx.db.pool, ref);
  const known = await listForReader(ctx.db.pool, ref, { emails: viewer.emails, siteAdmin: false });
  if (!known) throw new NotFound(`no list ${ref}`, 'no_such_list');
  if (known.matches > 1) throw new InvalidInput(`"${ref}" names more than one list: give the full address`, 'ambiguous_list');
  return findList(ctx.db.pool, known.address);
}

export function listAccessOf(res: Response): ListAccess {
  return { list: res.locals.list, role: res.locals.role, can: res.locals.can };
}

/** The viewer's address for the audit log. */
export function actor(req: Request): string {
  return req.viewer?.email ?? 'anonymous';
}

/**
 * A return path that stays on this site (no //host or scheme tricks). Browsers read a backslash
 * as a slash and drop tabs and line breaks, so `/\evil` and `/<TAB>/evil` would leave the site:
 * a path with a backslash or any control character is refused outright.
 */
export function safeNext(value: unknown, fallback: string): string {
  if (typeof value !== 'string' || !value.startsWith('/') || value.startsWith('//') || value.length > 1000) return fallback;
  return /[\\\u0000-\u001f\u007f]/.test(value) ? fallback : value;
}
