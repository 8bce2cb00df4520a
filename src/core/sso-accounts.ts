/*
 * The account a single sign-on (OpenID Connect or LDAP) logs into, as Postorius with social login
 * does it (django-allauth's automatic sign-up for a verified address): the address the provider
 * vouches for is a verified address, exactly as one proved by a mailed link. So it logs into the
 * account that has that address verified (primary or not), and when none has, an account is
 * created with it as the verified primary address, the same as a first login by mailed link;
 * nobody has to be invited first, and a subscriber finds their subscriptions at once.
 *
 * An address that an account added but never verified gives no way into that account: the
 * provider proved the address, not the claim of whoever typed it into their account.
 *
 * A provider's admin group (OIDC_ADMIN_GROUP, LDAP_ADMIN_GROUP) makes its members site
 * administrators at login, and at the first login after someone left the group the rights that
 * group gave are taken back (accounts.site_admin_via). A site administrator made by
 * `listkeeper account add --site-admin` stays one whatever a provider says.
 */

import type pg from 'pg';
import { applySsoSiteAdmin, findAccount, upsertAccount, type AccountRow } from '../db/accounts.ts';
import { recordAudit } from '../db/audit.ts';
import { withTransaction } from '../db/pool.ts';
import { InvalidInput } from '../errors.ts';
import { normalizeEmail } from '../mail/address.ts';

export type SsoMethod = 'oidc' | 'ldap';

/** What a provider vouches for. admin: whether it names the user in the admin group; null: no group configured. */
export interface SsoIdentity {
  method: SsoMethod;
  /** the provider's name for the user: the OpenID subject, the LDAP DN */
  subject: string;
  email: string;
  admin: boolean | null;
}

/** The account of a verified address, created when there is none; site administration added when the provider says so. */
export async function accountForSso(pool: pg.Pool, identity: SsoIdentity): Promise<{ account: AccountRow; created: boolean }> {
  const email = normalizeEmail(identity.email);
  if (!email) throw new InvalidInput(`The provider's address "${identity.email.slice(0, 254)}" is not an e-mail address we can use.`, 'sso_email');
  return withTransaction(pool, async (tx) => {
    const result = await upsertAccount(tx, email);
    const detail = { via: identity.method, subject: identity.subject };
    if (result.created) await recordAudit(tx, { actor: email, action: 'account.create', target: email, detail });
    if (identity.admin === null) return result;
    const change = await applySsoSiteAdmin(tx, result.account.id, identity.method, identity.admin);
    if (!change) return result;
    await recordAudit(tx, { actor: email, action: change === 'granted' ? 'account.site_admin' : 'account.site_admin_revoke', target: result.account.email, detail });
    return { account: (await findAccount(tx, result.account.id))!, created: result.created };
  });
}
