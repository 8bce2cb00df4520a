/*
 * How many days a sender rule or an API token lasts, read alike by every entry point (the panel,
 * the command line, the REST API): a whole number from 1 to MAX_DAYS, or nothing for no end. A typo
 * ("-1", "0", "1.5", "1e3") is refused, not taken as "for ever", and a huge number, which would be
 * no date PostgreSQL holds, is refused too. The end itself is counted in SQL from the database's
 * now() (db/sender-rules.ts, db/api-tokens.ts), the clock that judges it, not this process's.
 */

import { InvalidInput } from './errors.ts';

export const MAX_DAYS = 99_999;

/** `value` (a form's or an option's text, or a JSON number) as days; null for nothing. `label` names it in the error. */
export function parseDays(value: unknown, label: string): number | null {
  if (value === undefined || value === null || (typeof value === 'string' && value.trim() === '')) return null;
  const text = typeof value === 'string' ? value.trim() : typeof value === 'number' ? String(value) : null;
  if (text === null || !/^[1-9]\d{0,4}$/.test(text)) {
    const got = text ?? (Array.isArray(value) ? 'an array' : `a ${typeof value}`);
    throw new InvalidInput(`${label} must be a whole number from 1 to ${MAX_DAYS}, or nothing for no end (got "${got.slice(0, 40)}")`, 'invalid_days');
  }
  return Number(text);
}
