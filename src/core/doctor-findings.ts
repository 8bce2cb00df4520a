/** What `listkeeper doctor` says about one thing it checked (src/core/doctor.ts). */

/** The deadline of each database statement of a check. */
export const QUERY_MS = 5_000;

export type Status = 'ok' | 'warn' | 'fail';

export interface Finding {
  status: Status;
  /** what was checked: database, migrations, dns.mx, tls, disk, queue … */
  check: string;
  what: string;
  /** how to fix it; null when there is nothing to do */
  fix: string | null;
}

export const ok = (check: string, what: string): Finding => ({ status: 'ok', check, what, fix: null });
export const warn = (check: string, what: string, fix: string): Finding => ({ status: 'warn', check, what, fix });
export const fail = (check: string, what: string, fix: string): Finding => ({ status: 'fail', check, what, fix });

