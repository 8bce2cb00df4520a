/*
 * The certificates listkeeper is configured with, as `listkeeper doctor` checks them: STARTTLS's
 * (SMTP_TLS_CERT, its chain included) and the CAs trusted for the relay (RELAY_TLS_CA). The
 * certificate in a file that expires first decides: expired, not yet valid or unreadable fails,
 * less than WARN_DAYS left warns.
 */

import crypto from 'node:crypto';
import type { Config } from '../config.ts';
import { FileRefused, PEM_LIMIT, readBoundedFile } from '../read-file.ts';
import { fail, ok, warn, type Finding } from './doctor-findings.ts';

/** Time enough to renew by hand, and to notice an automatic renewal that failed (Let's Encrypt renews at 30 days left). */
export const WARN_DAYS = 21;
const DAY_MS = 86_400_000;

export async function certificateFindings(cfg: Config, now = new Date()): Promise<Finding[]> {
  const files = [
    ...(cfg.smtp.tls ? [{ variable: 'SMTP_TLS_CERT', file: cfg.smtp.tls.certFile, renew: 'renew the certificate (e.g. "certbot renew"), then send serve SIGHUP to load it' }] : []),
    ...(cfg.relayTlsCa ? [{ variable: 'RELAY_TLS_CA', file: cfg.relayTlsCa, renew: 'replace the file with the relay\'s current CA certificates' }] : []),
  ];
  if (files.length === 0) return [ok('tls', 'no certificate configured (SMTP_TLS_CERT and RELAY_TLS_CA unset)')];
  return Promise.all(files.map((f) => fileFinding(f.variable, f.file, f.renew, now)));
}

async function fileFinding(variable: string, file: string, renew: string, now: Date): Promise<Finding> {
  const where = `${variable} ${file}`;
  let certs: crypto.X509Certificate[];
  try {
    const pem = readBoundedFile(file, PEM_LIMIT).toString('utf8');
    certs = (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((block) => new crypto.X509Certificate(block));
    if (certs.length === 0) throw new Error('no PEM certificate in it');
  } catch (err) {
    const reason = err instanceof FileRefused ? (err.reason === 'unreadable' ? err.detail : `it ${err.detail}`) : (err as Error).message;
    return fail('tls', `${where} cannot be read: ${reason}`, `make ${variable} name a readable PEM file of certificates`);
  }
  const first = certs.reduce((a, b) => (new Date(b.validTo) < new Date(a.validTo) ? b : a));
  const until = new Date(first.validTo);
  const subject = first.subject.replace(/\n/g, ', ');
  if (new Date(first.validFrom) > now) return fail('tls', `${where}: ${subject} is not valid before ${new Date(first.validFrom).toISOString()}`, renew);
  const days = Math.floor((until.getTime() - now.getTime()) / DAY_MS);
  if (until <= now) return fail('tls', `${where}: ${subject} expired on ${until.toISOString()}`, renew);
  const what = `${where}: ${subject} is valid until ${until.toISOString()} (${days} days)`;
  if (days < WARN_DAYS) return warn('tls', what, renew);
  return ok('tls', what);
}
