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

/** Whether cookies we set must be Secure: when the public URL is https. */
export function secureCookies(publicUrl: string): boolean {
  return publicUrl.startsWith('https:');
}

/** Every cookie we set or clear: for the whole site, HttpOnly, SameSite=Lax unless said otherwise. */
export function cookieOptions(secure: boolean, sameSite: 'lax' | 'strict' = 'lax'): CookieOptions {
  return { path: '/', httpOnly: true, sameSite, secure };
}
