/* Reading submitted forms: one place that turns loose form values into checked ones. */

import type { Request } from 'express';
import { InvalidInput } from '../../errors.ts';
import { normalizeEmail } from '../../mail/address.ts';

export function field(req: Request, name: string, max = 10_000): string {
  const v = (req.body as Record<string, unknown> | undefined)?.[name];
  const s = Array.isArray(v) ? String(v[0] ?? '') : typeof v === 'string' ? v : '';
  return s.slice(0, max).trim();
}

/** A field that may be sent several times (checkboxes): always an array of strings. */
export function fields(req: Request, name: string): string[] {
  const v = (req.body as Record<string, unknown> | undefined)?.[name];
  if (Array.isArray(v)) return v.filter((x): x is string => typeof x === 'string');
  return typeof v === 'string' ? [v] : [];
}

export function query(req: Request, name: string, max = 500): string {
  const v = (req.query as Record<string, unknown>)[name];
  return typeof v === 'string' ? v.slice(0, max).trim() : '';
}

export function oneOf<T extends string>(label: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) throw new InvalidInput(`${label} must be one of ${allowed.join(', ')}.`);
  return value as T;
}

/** A value from a fixed set, or null when it is empty or not one of them (filters in URLs). */
export function optionalOneOf<T extends string>(value: string, allowed: readonly T[]): T | null {
  return (allowed as readonly string[]).includes(value) ? (value as T) : null;
}

export function email(label: string, value: string): string {
  const e = normalizeEmail(value);
  if (!e) throw new InvalidInput(`${label}: "${value}" is not an e-mail address.`);
  return e;
}

/** A whole number from 1 up, small enough for a bigint id (ids in URLs are typed by strangers). */
export function positiveInt(value: string, fallback: number): number {
  const n = Number(value);
  return Number.isSafeInteger(n) && n > 0 ? n : fallback;
}
