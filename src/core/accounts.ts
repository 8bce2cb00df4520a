import type pg from 'pg';
import { dropSiteAdmin, findAccountByEmail, lockSiteAdmins, upsertAccount, type AccountRow } from '../db/accounts.ts';
import { liveTokensMadeBy } from '../db/api-tokens.ts';
import { recordAudit } from '../db/audit.ts';
import { withTransaction } from '../db/pool.ts';
import { Conflict, NotFound } from '../errors.ts';

/**
 * Makes `email` a site administrator, creating the account if needed (`listkeeper admin create`),
 * with its audit entry in the same transaction. `passwordHash` undefined leaves the password as it is.
 */
export async function makeSiteAdmin(pool: pg.Pool, email: string, opts: { passwordHash?: string; actor: string }): Promise<{ account: AccountRow; created: boolean }> {
  return withTransaction(pool, async (tx) => {
    const result = await upsertAccount(tx, email, { passwordHash: opts.passwordHash, siteAdmin: true });
    await recordAudit(tx, {
      actor: opts.actor, action: result.created ? 'account.create' : 'account.update', target: email,
      detail: { site_admin: true, password: opts.passwordHash ? 'set' : 'unchanged' },
    });
    return result;
  });
}

/**
 * Takes site-administrator rights from the account holding `email` (`listkeeper admin remove`),
 * with its audit entry in the same transaction. The account stays, with its list roles and
 * subscriptions; its sessions lose the panel's site-wide pages at their next request (a session
 * reads the rights each time), and the API tokens it made in the panel stop working (they work
 * only while their maker is a site administrator). The last site administrator is kept: without
 * one, nobody could create lists or read the audit log until `admin create` made another.
 */
export async function removeSiteAdmin(pool: pg.Pool, email: string, opts: { actor: string }): Promise<{ account: AccountRow; tokens: number }> {
  return withTransaction(pool, async (tx) => {
    // Every administrator's row locked: two removals at once must not each see the other as the
    // one left (the second waits, and reads the first's removal).
    const admins = await lockSiteAdmins(tx);
    const account = await findAccountByEmail(tx, email);
    if (!account || !admins.includes(account.id)) throw new NotFound(`${email} is not a site administrator (listkeeper admin ls lists them)`);
    if (admins.length === 1) throw new Conflict(`${account.email} is the last site administrator: make another first (listkeeper admin create EMAIL)`);
    // Counted while they still work: the one definition of a working token (db/api-tokens.ts STATE).
    const tokens = await liveTokensMadeBy(tx, account.id);
    await dropSiteAdmin(tx, account.id);
    await recordAudit(tx, {
      actor: opts.actor, action: 'account.site_admin_revoke', target: account.email,
      detail: { via: account.site_admin_via ?? 'cli', api_tokens_stopped: tokens },
    });
    return { account, tokens };
  });
}
