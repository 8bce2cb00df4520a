import type pg from 'pg';
import { upsertAccount, type AccountRow } from '../db/accounts.ts';
import { recordAudit } from '../db/audit.ts';
import { withTransaction } from '../db/pool.ts';

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
