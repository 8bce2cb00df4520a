/*
 * The limits on password guessing, shared by every form that takes a password (our own, and the
 * directory's through LDAP), counted in PostgreSQL so that every web instance sees the same
 * counts. Every attempt counts per IP; failures count per name and IP (10 close that pair: a
 * guesser on one network) and per name from anywhere (100, NIST SP 800-63B's ceiling: a guesser
 * on many networks). A stranger's failures never lock the owner out: the right password from
 * another network still works, and so do a mailed link and an OpenID login.
 */

import type pg from 'pg';
import { verifyPassword } from '../../auth/credentials.ts';
import { allowHit, clearHits, clientKey, currentHits } from '../../db/rate-limits.ts';

export const LOGIN_LIMIT = { perIp: 30, failuresPerPair: 10, failuresPerName: 100, windowSeconds: 15 * 60 };

/** The counters of one login name: an address (`login:fail:a@b`) or a directory user (`login:fail:ldap:uid`). */
export class LoginLimits {
  private readonly ip: string;
  private readonly pairKey: string;
  private readonly nameKey: string;

  constructor(private readonly db: pg.Pool, ip: string | undefined, name: string) {
    this.ip = clientKey(ip);
    this.pairKey = `login:fail:${name}:${this.ip}`;
    this.nameKey = `login:fail:${name}`;
  }

  /** Counts this attempt against the IP; false when the IP, the pair or the name is over its limit. */
  async allowed(): Promise<boolean> {
    const ipAllowed = await allowHit(this.db, `login:ip:${this.ip}`, LOGIN_LIMIT.perIp, LOGIN_LIMIT.windowSeconds);
    if (!ipAllowed) return false;
    const [pair, name] = await currentHits(this.db, [this.pairKey, this.nameKey], LOGIN_LIMIT.windowSeconds);
    return pair < LOGIN_LIMIT.failuresPerPair && name < LOGIN_LIMIT.failuresPerName;
  }

  async failed(): Promise<void> {
    await allowHit(this.db, this.pairKey, LOGIN_LIMIT.failuresPerPair, LOGIN_LIMIT.windowSeconds);
    await allowHit(this.db, this.nameKey, LOGIN_LIMIT.failuresPerName, LOGIN_LIMIT.windowSeconds);
  }

  /** The right password from this network: its failures are forgiven (the name's from elsewhere are not). */
  async succeeded(): Promise<void> {
    await clearHits(this.db, this.pairKey);
  }
}

export type PasswordCheck = 'right' | 'wrong' | 'limited';

/**
 * The password of a logged-in account, asked again (changing it, logging in again before a
 * sensitive change), under the login's limits: a session (a cookie taken, a shared machine) must
 * not be a way to guess the password without limit, and then use it where the session does not reach.
 */
export async function checkAccountPassword(db: pg.Pool, ip: string | undefined, account: { email: string; password_hash: string | null }, password: string): Promise<PasswordCheck> {
  const limits = new LoginLimits(db, ip, account.email);
  if (!(await limits.allowed())) return 'limited';
  if (!(await verifyPassword(account.password_hash, password))) {
    await limits.failed();
    return 'wrong';
  }
  await limits.succeeded();
  return 'right';
}
