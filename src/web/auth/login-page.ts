/*
 * What every way of logging in shares: the login page's list of the ways that are on, the session
 * that a successful login starts (the same whichever way it came), and where it lands.
 */

import type { Request, Response } from 'express';
import type pg from 'pg';
import type { Config } from '../../config.ts';
import { recordLogin, type AccountRow } from '../../db/accounts.ts';
import { hasAnyListRole } from '../../db/list-admin.ts';
import type { WebContext } from '../context.ts';
import { startSession } from '../session.ts';

/** The ways to log in the login page offers (PASSWORD_LOGIN, MAGIC_LINK_LOGIN, OIDC_*, LDAP_*). */
export function loginPageVars(cfg: Config): Record<string, unknown> {
  const { password, magicLink, oidc, ldap } = cfg.login;
  return { methods: { password, magicLink, oidc: oidc ? oidc.label : null, ldap: ldap ? ldap.label : null } };
}

/**
 * Logs the browser in as the account: a fresh session id, and the time of the login recorded.
 * `loginEmail` is the verified address it logged in with (typed with the password, mailed a link,
 * vouched for by single sign-on); null when none was.
 */
export async function loginSession(ctx: WebContext, req: Request, res: Response, accountId: number, loginEmail: string | null): Promise<void> {
  await startSession(ctx, req, res, accountId, loginEmail);
  await recordLogin(ctx.db.pool, accountId);
}

/** Without a return path: the panel for site administrators, owners and moderators; the account page for others. */
export async function landingAfterLogin(db: pg.Pool, account: AccountRow): Promise<string> {
  return account.is_site_admin || (await hasAnyListRole(db, account.id)) ? '/admin/' : '/account';
}
