/*
 * Who may download an archive's raw mail: raw messages and mbox files (a month, a thread). They
 * are the record, byte for byte, so they carry every address the pages obfuscate for anonymous
 * readers; a crawler that follows the "raw" link harvests them all. ARCHIVE_RAW_ACCESS says who
 * gets them without logging in:
 *   anyone    (the default) every reader of the archive;
 *   antispam  readers who answer HTTP Basic authentication with user "archives" and password
 *             "antispam", which the challenge itself tells them: people and their scripts pass,
 *             crawlers do not (pgarchives' antispam_auth, on postgresql.org since 2012);
 *   login     logged-in readers only; others are sent to log in and come back.
 * Logged-in readers always pass. The list's own access rules (members-only, private) apply after
 * this, as to any page. Runs before the page cache, which serves anonymous readers.
 */

import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { loginUrl } from '../../mail/urls.ts';

export type RawAccess = 'anyone' | 'antispam' | 'login';

const ANTISPAM_USER = 'archives';
const ANTISPAM_PASSWORD = 'antispam';
const CHALLENGE = `Basic realm="Please authenticate with user ${ANTISPAM_USER} and password ${ANTISPAM_PASSWORD}", charset="UTF-8"`;

/** Whether an Authorization header is Basic with the published user and password (RFC 7617). */
export function antispamAnswered(header: string | undefined): boolean {
  const m = /^basic +([A-Za-z0-9+/]+=*) *$/i.exec(header ?? '');
  return m !== null && Buffer.from(m[1], 'base64').toString('utf8') === `${ANTISPAM_USER}:${ANTISPAM_PASSWORD}`;
}

export function rawAccess(mode: RawAccess): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    if (mode === 'anyone' || req.viewer) return next();
    // What passed here without a login must not be kept by a shared cache for whoever asks next.
    res.locals.privateDownload = true;
    if (mode === 'antispam' && antispamAnswered(req.get('authorization'))) return next();
    res.setHeader('Cache-Control', 'no-store');
    if (mode === 'login') return res.redirect(303, loginUrl(req.originalUrl));
    res.status(401).setHeader('WWW-Authenticate', CHALLENGE);
    res.type('text/plain').send(`Raw messages and mbox files are kept from address harvesters: log in, or authenticate with user "${ANTISPAM_USER}" and password "${ANTISPAM_PASSWORD}" (curl -u ${ANTISPAM_USER}:${ANTISPAM_PASSWORD} URL).\n`);
  };
}
