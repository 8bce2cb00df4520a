import type { CookieOptions, Request } from 'express';

/** Cookies of a request, parsed once (no cookie-parser dependency for a dozen lines). */
export function cookies(req: Request): Record<string, string> {
  const cached = (req as Request & { _cookies?: Record<string, string> })._cookies;
  if (cached) return cached;
  const out: Record<string, string> = {};
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const key = part.slice(0, eq).trim();
    if (!key || key in out) continue;
    try {
      out[key] = decodeURIComponent(part.slice(eq + 1).trim());
    } catch {
      out[key] = part.slice(eq + 1).trim();
    }
  }
  (req as Request & { _cookies?: Record<string, string> })._cookies = out;
  return out;
}

/**
 * A cookie's name as it is set and read: over https with the `__Host-` prefix, which browsers
 * accept only from this very host, Secure, for path / and without a Domain (RFC 6265bis
 * §4.1.3.2). So a sibling host of the domain (another app on a subdomain, one taken over) cannot
 * plant its own session, login or CSRF cookie in a visitor's browser. Plain http has no such
 * prefix: the bare name.
 */
export function cookieName(base: string, secure: boolean): string {
  return secure ? `__Host-${base}` : base;
}

/** Whether cookies we set must be Secure: when the public URL is https. */
export function secureCookies(publicUrl: string): boolean {
  return publicUrl.startsWith('https:');
}

/** Every cookie we set or clear: for the whole site, HttpOnly, SameSite=Lax unless said otherwise. */
export function cookieOptions(secure: boolean, sameSite: 'lax' | 'strict' = 'lax'): CookieOptions {
  return { path: '/', httpOnly: true, sameSite, secure };
}
