/*
 * How secrets are kept in the database: passwords as argon2id hashes (PHC strings), session ids
 * and mailed tokens as SHA-256 hex digests (they are random and long, so a fast hash is enough).
 */

import crypto from 'node:crypto';
import { hash, verify } from '@node-rs/argon2';
import { InvalidInput } from '../errors.ts';

// NIST SP 800-63B: at least 8 characters, no composition rules; argon2id makes guessing slow.
export const MIN_PASSWORD = 8;
const MAX_PASSWORD = 256;

export function passwordProblem(password: string): string | null {
  if (password.length < MIN_PASSWORD) return `A password needs at least ${MIN_PASSWORD} characters.`;
  if (password.length > MAX_PASSWORD) return `A password may have at most ${MAX_PASSWORD} characters.`;
  return null;
}

export async function hashPassword(password: string): Promise<string> {
  const problem = passwordProblem(password);
  if (problem) throw new InvalidInput(problem, 'weak_password');
  return hash(password);
}

let dummy: Promise<string> | undefined;

/**
 * Checks a password against a stored hash. Without a hash (no such account, or an account that
 * logs in by link only) the same work is done against a dummy hash, so the answer takes as long
 * whether or not the account exists.
 */
export async function verifyPassword(stored: string | null | undefined, password: string): Promise<boolean> {
  const candidate = password.slice(0, MAX_PASSWORD);
  if (!stored) {
    dummy ??= hash(crypto.randomBytes(16).toString('hex'));
    await verify(await dummy, candidate).catch(() => false);
    return false;
  }
  try {
    return await verify(stored, candidate);
  } catch {
    return false;
  }
}

export function newToken(): string {
  return crypto.randomBytes(32).toString('base64url');
}

export function hashToken(token: string): string {
  return crypto.createHash('sha256').update(token).digest('hex');
}

/** Tokens in URLs and cookies are 43 base64url characters; anything else is refused unread. */
export function looksLikeToken(value: unknown): value is string {
  return typeof value === 'string' && /^[A-Za-z0-9_-]{43}$/.test(value);
}
