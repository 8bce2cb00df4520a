/*
 * The only reader of process.env. One schema, parsed once; a bad value stops start-up with one
 * line naming the variable. Every variable is described in docs/configuration.md.
 */

import crypto from 'node:crypto';
import dns from 'node:dns';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import util from 'node:util';
import { z } from 'zod';
import { log, redactUrl } from './log.ts';
import { FileRefused, PEM_LIMIT, readBoundedFile } from './read-file.ts';
import { setRepeatSummarySeconds } from './repeated-failures.ts';

const port = z.coerce.number().int().min(0).max(65535);
const url = (protocols: string[]) =>
  z.string().refine((v) => {
    try {
      return protocols.includes(new URL(v).protocol);
    } catch {
      return false;
    }
  }, `must be a URL starting with ${protocols.join(' or ')}`);
const domain = z
  .string()
  .regex(/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i, 'must be a domain name');
const positiveInt = z.coerce.number().int().positive();
// A listener's address as listen() takes it: an IP address (IPv6 without brackets) or a host name.
const listenHost = z.string().refine((v) => net.isIP(v) !== 0 || domain.safeParse(v).success, 'must be an IP address (IPv6 without brackets) or a host name');

function dnsServersValid(value: string): boolean {
  const servers = value.split(',').map((s) => s.trim());
  if (servers.some((s) => s === '')) return false;
  try {
    new dns.Resolver().setServers(servers);
    return true;
  } catch {
    return false;
  }
}

/**
 * The proxies whose X-Forwarded-For is believed (WEB_TRUST_PROXY), as Express takes them: the
 * names loopback, linklocal and uniquelocal, addresses, and networks as ADDRESS/PREFIX.
 */
function proxyList(value: string): string[] | null {
  const items = value.split(',').map((v) => v.trim()).filter(Boolean);
  const valid = (item: string) => {
    if (['loopback', 'linklocal', 'uniquelocal'].includes(item)) return true;
    const [address, prefix, ...rest] = item.split('/');
    const family = net.isIP(address);
    if (family === 0 || rest.length > 0) return false;
    return prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128));
  };
  return items.length > 0 && items.every(valid) ? items : null;
}

/** A CA file's check: a readable PEM file of certificates, or an issue saying why not (a device, too big). */
function readablePem(file: string, ctx: z.RefinementCtx): void {
  const message = 'must be a readable PEM file of CA certificates';
  let text: string;
  try {
    text = readBoundedFile(file, PEM_LIMIT).toString('utf8');
  } catch (err) {
    const detail = err instanceof FileRefused && err.reason !== 'unreadable' ? `: it ${err.detail}` : '';
    return void ctx.addIssue({ code: 'custom', message: `${message}${detail}` });
  }
  if (!text.includes('-----BEGIN CERTIFICATE-----')) ctx.addIssue({ code: 'custom', message });
}

/** Postfix's smtp_tls_security_level may / encrypt / verify, for the relay (docs/configuration.md, RELAY_TLS). */
export type RelayTls = 'opportunistic' | 'require' | 'verify';

const schema = z.object({
  DATABASE_URL: url(['postgres:', 'postgresql:']).optional(),
  DATABASE_READ_URL: url(['postgres:', 'postgresql:']).optional(),
  DATABASE_READ_MAX_LAG: z.coerce.number().int().min(1).max(3600).default(10),
  DATABASE_DIRECT_URL: url(['postgres:', 'postgresql:']).optional(),
  DATABASE_POOL_MODE: z.enum(['session', 'transaction']).default('session'),
  MAIL_DOMAIN: domain.default('lists.localhost'),
  // Unset: http://WEB_HOST:WEB_PORT (publicUrlOf), so that moving the listener moves the links.
  PUBLIC_URL: url(['http:', 'https:']).optional(),
  SMTP_HOST: listenHost.default('127.0.0.1'),
  SMTP_PORT: port.default(2525),
  SMTP_LMTP: z.enum(['0', '1', 'true', 'false']).default('0'),
  SMTP_MAX_SIZE: positiveInt.default(25 * 1024 * 1024),
  SMTP_MEMORY_MB: positiveInt.optional(),
  SMTP_DATA_TIMEOUT: positiveInt.default(600),
  SMTP_TLS_CERT: z.string().optional(),
  SMTP_TLS_KEY: z.string().optional(),
  SMTP_REQUIRE_TLS: z.enum(['0', '1', 'true', 'false']).default('0'),
  // Unset: none for loopback peers and LMTP, 100 ms for others (src/smtp/greeting.ts)
  SMTP_GREETING_DELAY_MS: z.coerce.number().int().min(0).max(60_000).optional(),
  WEB_HOST: listenHost.default('127.0.0.1'),
  WEB_PORT: port.default(8080),
  WEB_TRUST_PROXY: z.string().default('loopback').refine((v) => proxyList(v) !== null, 'must be loopback, linklocal, uniquelocal, addresses or ADDRESS/PREFIX networks, separated by commas'),
  // Unset: /metrics on the web port only; set: on a listener of its own in every serve process
  // (src/metrics-server.ts), and no longer on the web port
  METRICS_PORT: port.optional(),
  METRICS_HOST: listenHost.default('127.0.0.1'),
  PAGE_CACHE_MB: z.coerce.number().int().min(0).default(64),
  MESSAGE_CACHE_MB: z.coerce.number().int().min(0).default(64),
  WEB_PROCESSES: z.coerce.number().int().min(1).max(64).default(1),
  // Heavy downloads (mbox, large raw messages and attachments) at once per web process (src/web/archive/download-slots.ts)
  WEB_MAX_DOWNLOADS: z.coerce.number().int().min(1).max(10_000).default(8),
  // Who downloads raw messages and mbox files without logging in (src/web/archive/raw-access.ts)
  ARCHIVE_RAW_ACCESS: z.enum(['anyone', 'antispam', 'login']).default('anyone'),
  // REST API requests per token per minute (src/web/api/auth.ts; docs/api.md)
  API_RATE_LIMIT: z.coerce.number().int().min(1).max(1_000_000).default(600),
  RELAY_URL: url(['smtp:', 'smtps:']).optional(),
  RELAY_TLS: z.enum(['opportunistic', 'require', 'verify']).default('opportunistic'),
  RELAY_TLS_CA: z.string().superRefine(readablePem).optional(),
  SMTP_HELO_NAME: domain.optional(),
  AUTH_CHECK_TIMEOUT_MS: z.coerce.number().int().min(100).max(60_000).default(10_000),
  // list-policies.ts SYNCHRONOUS_COMMITS (config imports nothing but log; test/synchronous-commit.test.ts checks they agree)
  POST_SYNCHRONOUS_COMMIT: z.enum(['local', 'remote_write', 'on', 'remote_apply']).optional(),
  // What the resolver's setServers() takes (src/dns.ts useDnsServers): checked here, so that a name
  // or a bad port stops start-up naming the variable rather than with the resolver's own error.
  DNS_SERVERS: z.string().refine(dnsServersValid, 'must be comma-separated resolver addresses: IP, IP:port or [IPv6]:port').optional(),
  // The spam check (src/core/spam-check.ts; docs/mail.md): an rspamd controller or normal worker
  SPAM_CHECK_URL: url(['http:', 'https:']).optional(),
  SPAM_CHECK_FAIL: z.enum(['accept', 'tempfail']).default('accept'),
  SPAM_CHECK_TIMEOUT: z.coerce.number().positive().max(600).default(10),
  // The cache in front of the archive (src/cache/purger.ts; docs/operations.md "Behind Varnish")
  PURGE_URL: url(['http:', 'https:']).optional(),
  PURGE_TIMEOUT: z.coerce.number().positive().max(600).default(5),
  DATA_DIR: z.string().min(1).default('./data'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  // How often a failure that keeps repeating is summed up in the log (src/repeated-failures.ts)
  LOG_REPEAT_SECONDS: z.coerce.number().positive().max(86_400).default(60),
  // Unset: defaultPoolSize(cores)
  DB_POOL_SIZE: positiveInt.optional(),
  // Delivery (docs/delivery.md; each variable in docs/configuration.md)
  DELIVERY_BATCH_SIZE: positiveInt.default(500),
  DELIVERY_CONNECTIONS: positiveInt.default(16),
  DELIVERY_DOMAIN_CONNECTIONS: positiveInt.default(3),
  DELIVERY_MX_PORT: port.default(25),
  // Networks that are not public but that direct delivery may reach (src/delivery/mx-addresses.ts)
  DELIVERY_MX_ALLOW: z.string().default('').refine((v) => v.trim() === '' || proxyList(v) !== null, 'must be loopback, linklocal, uniquelocal, addresses or ADDRESS/PREFIX networks, separated by commas'),
  // Addresses direct delivery never reaches though they look public: this machine's as others
  // see it (a NAT's public address), which its interfaces do not show
  DELIVERY_MX_DENY: z.string().default('').refine((v) => v.trim() === '' || proxyList(v) !== null, 'must be addresses or ADDRESS/PREFIX networks (or loopback, linklocal, uniquelocal), separated by commas'),
  DELIVERY_POLL_MS: positiveInt.default(5000),
  DELIVERY_LEASE_SECONDS: positiveInt.default(60),
  DELIVERY_TIMEOUT_SECONDS: positiveInt.default(30),
  // The reply to the final dot: RFC 5321 §4.5.3.2.6 and Postfix's smtp_data_done_timeout
  DELIVERY_DATA_DONE_TIMEOUT_SECONDS: positiveInt.default(600),
  DELIVERY_GIVE_UP_HOURS: z.coerce.number().positive().default(120),
  DELIVERY_KEEP_DAYS: positiveInt.default(7),
  // Conversion jobs (core/conversions.ts): rows per short transaction, and the pause between two
  CONVERSION_BATCH_ROWS: z.coerce.number().int().min(1).max(100_000).default(1000),
  CONVERSION_PAUSE_MS: z.coerce.number().int().min(0).max(60_000).default(50),
  CONFIRM_TOKEN_HOURS: positiveInt.default(72),
  OWNER_ADDS_PER_DAY: positiveInt.default(1000),
  NOTICE_FROM: z.string().regex(/^[^\s@]+@[^\s@]+$/, 'must be an e-mail address').optional(),
  // Retention of rejected mail, decided posts and bounce records (src/core/retention.ts)
  REJECTED_MAX_KB: z.coerce.number().int().min(0).max(1024 * 1024).default(64),
  REJECTED_PER_SENDER_PER_DAY: z.coerce.number().int().min(0).default(50),
  REJECTED_PER_CLIENT_PER_DAY: z.coerce.number().int().min(0).default(200),
  REJECTED_PER_DAY: z.coerce.number().int().min(0).default(2000),
  KEEP_REJECTED_DAYS: positiveInt.default(30),
  KEEP_DECIDED_DAYS: positiveInt.default(30),
  KEEP_BOUNCES_DAYS: positiveInt.default(180),
  HELD_EXPIRE_DAYS: z.coerce.number().int().min(0).default(30),
  // Ways to log in to the panel (docs/single-sign-on.md): password and mailed link on by default,
  // OpenID Connect and LDAP off until configured.
  PASSWORD_LOGIN: z.enum(['on', 'off']).default('on'),
  MAGIC_LINK_LOGIN: z.enum(['on', 'off']).default('on'),
  OIDC_ISSUER: url(['https:', 'http:']).optional(),
  OIDC_CLIENT_ID: z.string().min(1).max(1000).optional(),
  OIDC_CLIENT_SECRET: z.string().min(1).optional(),
  OIDC_SCOPES: z.string().regex(/(^|\s)openid(\s|$)/, 'must include openid').default('openid email profile'),
  OIDC_GROUPS_CLAIM: z.string().min(1).max(200).default('groups'),
  OIDC_ADMIN_GROUP: z.string().min(1).max(1000).optional(),
  OIDC_LABEL: z.string().min(1).max(100).default('single sign-on'),
  OIDC_TIMEOUT: z.coerce.number().positive().max(120).default(10),
  LDAP_URL: url(['ldap:', 'ldaps:']).optional(),
  LDAP_BIND_DN: z.string().includes('{user}', { message: 'must contain {user}' }).optional(),
  LDAP_SEARCH_BASE: z.string().min(1).optional(),
  LDAP_SEARCH_FILTER: z.string().regex(/^\(.*\{user\}.*\)$/, 'must be a filter in parentheses containing {user}').default('(uid={user})'),
  LDAP_BIND_USER: z.string().min(1).optional(),
  LDAP_BIND_PASSWORD: z.string().min(1).optional(),
  LDAP_MAIL_ATTRIBUTE: z.string().regex(/^[A-Za-z][A-Za-z0-9-]*$/, 'must be an attribute name').default('mail'),
  LDAP_ADMIN_GROUP: z.string().min(1).optional(),
  LDAP_TLS_CA: z.string().superRefine(readablePem).optional(),
  LDAP_LABEL: z.string().min(1).max(100).default('directory account'),
  LDAP_TIMEOUT: z.coerce.number().positive().max(120).default(10),
});

export interface Config {
  databaseUrl?: string;
  databaseReadUrl?: string;
  /** seconds the replica may be behind the primary before reads go to the primary (read-pool.ts) */
  databaseReadMaxLagMs: number;
  /**
   * A connection that is a whole session, for what needs one (LISTEN, session advisory locks,
   * migrations, imports, backups) when DATABASE_URL goes through a pooler in transaction mode.
   */
  databaseDirectUrl?: string;
  /** 'transaction': DATABASE_URL (and DATABASE_READ_URL) is a PgBouncer in pool_mode=transaction (db/pooler.ts) */
  databasePoolMode: 'session' | 'transaction';
  mailDomain: string;
  publicUrl: string;
  /**
   * memoryBytes: message data the listener holds at once across sessions (src/smtp/memory-budget.ts);
   * dataTimeoutMs: the longest DATA phase before a 451 and a closed connection.
   * tls: the PEM files of STARTTLS (SMTP_TLS_CERT, SMTP_TLS_KEY), read again on SIGHUP; null: no STARTTLS.
   * requireTls: MAIL is refused before STARTTLS (SMTP_REQUIRE_TLS).
   * greetingDelayMs: the wait before the greeting for every peer (SMTP_GREETING_DELAY_MS); null: chosen per peer.
   */
  smtp: {
    host: string; port: number; lmtp: boolean; maxSize: number; memoryBytes: number; dataTimeoutMs: number;
    tls: TlsFiles | null; requireTls: boolean; greetingDelayMs: number | null;
  };
  /**
   * pageCacheMb: rendered public archive pages kept in memory (per process); 0 turns the cache off.
   * processes: web processes sharing the port (src/web/processes.ts); 1 serves from `serve` itself.
   * messageCacheMb: parsed messages kept in memory (per process) for their pages and attachments.
   * apiRateLimit: REST API requests a token may make per minute (API_RATE_LIMIT).
   * maxDownloads: heavy downloads (mbox, large raw messages and attachments) at once per process.
   * rawAccess: who downloads raw messages and mbox files without logging in (ARCHIVE_RAW_ACCESS).
   */
  web: {
    host: string; port: number; pageCacheMb: number; processes: number; messageCacheMb: number; apiRateLimit: number; maxDownloads: number;
    rawAccess: 'anyone' | 'antispam' | 'login';
    /** the proxies whose X-Forwarded-For names the client (rate limits, logs): WEB_TRUST_PROXY */
    trustProxy: string[];
  };
  /** METRICS_HOST/METRICS_PORT: /metrics on a listener of its own, off the web port; null when unset */
  metrics: { host: string; port: number } | null;
  relayUrl?: string;
  /**
   * How the relay connection is secured. Credentials in RELAY_URL imply verify whatever RELAY_TLS
   * says: a password only ever goes over TLS whose certificate was checked.
   */
  relayTls: RelayTls;
  /** PEM file of CA certificates trusted for the relay besides the system ones (RELAY_TLS_CA) */
  relayTlsCa?: string;
  /** our name in EHLO, to the relay and to MX hosts (SMTP_HELO_NAME, default MAIL_DOMAIN) */
  heloName: string;
  /**
   * The spam check of every post (src/core/spam-check.ts). url: rspamd's controller (or normal
   * worker), its password as the URL's password; unset: no check. fail: what a post gets when the
   * scanner does not answer (accepted unscanned, or 451). timeoutMs: the deadline of one scan.
   */
  spamCheck: { url?: string; fail: 'accept' | 'tempfail'; timeoutMs: number };
  /**
   * The cache in front of the archive (src/cache/purger.ts). url: where PURGE requests naming the
   * changed pages' keys go (its user and password, if any, as Basic authentication); unset: no
   * cache to purge, and the worker drops what the triggers queue. timeoutMs: the deadline of one
   * purge request.
   */
  purge: { url?: string; timeoutMs: number };
  /** resolvers for every lookup (DNS_SERVERS); empty: the system's */
  dnsServers: string[];
  /**
   * The longest a post's authentication checks (SPF, DKIM, DMARC, ARC) may take, all lookups
   * together; past it the methods not finished are recorded as temperror and the post goes on.
   */
  authCheckTimeoutMs: number;
  /** what a post's accepting transaction waits for before the 250, unless its list says (null: the server's setting) */
  postSynchronousCommit: 'local' | 'remote_write' | 'on' | 'remote_apply' | null;
  dataDir: string;
  logLevel: string;
  /** LOG_LEVEL was given explicitly (one-shot commands are quieter by default) */
  logLevelSet: boolean;
  /** a failure that keeps repeating is logged when it starts, then summed up this often */
  logRepeatSeconds: number;
  dbPoolSize: number;
  /** DB_POOL_SIZE for a process that runs the web role alone (webPoolSize() when unset) */
  webDbPoolSize: number;
  /** background conversion jobs: rows per batch (one short transaction), pause between batches */
  conversions: { batchRows: number; pauseMs: number };
  delivery: {
    batchSize: number;
    connections: number;
    domainConnections: number;
    mxPort: number;
    /** DELIVERY_MX_ALLOW: non-public networks MX hosts may be reached on (none by default) */
    mxAllow: string[];
    /** DELIVERY_MX_DENY: addresses MX hosts are never reached on, before mxAllow (this machine's public address behind a NAT) */
    mxDeny: string[];
    pollMs: number;
    leaseSeconds: number;
    /** deadline of each network wait: connecting, the greeting, each command, the message's transfer */
    timeoutSeconds: number;
    /** deadline of the reply to the end of the message, once it is written (receivers scan content before they answer) */
    dataDoneTimeoutSeconds: number;
    giveUpHours: number;
    keepDays: number;
  };
  confirmTokenHours: number;
  /** addresses the owners of one list may add (or invite) through the panel and the API in a day */
  ownerAddsPerDay: number;
  /** From address of site notices that belong to no list (login links, password resets) */
  noticeFrom: string;
  /**
   * What is kept of mail we do not distribute, and for how long (src/core/retention.ts). Rejected mail
   * (ingest_errors) keeps its first rejectedMaxKb KB; past a quota per sender (and per client)
   * or for the whole site in a day, only a line without the bytes. heldExpireDays 0: held posts
   * wait for a moderator forever.
   */
  retention: {
    rejectedMaxKb: number;
    rejectedPerSenderPerDay: number;
    rejectedPerClientPerDay: number;
    rejectedPerDay: number;
    keepRejectedDays: number;
    keepDecidedDays: number;
    keepBouncesDays: number;
    heldExpireDays: number;
  };
  /** The ways to log in (docs/single-sign-on.md); oidc and ldap null when not configured. */
  login: {
    password: boolean;
    magicLink: boolean;
    /** the redirect URI is PUBLIC_URL + /login/oidc/callback, made where it is used */
    oidc: { issuer: string; clientId: string; clientSecret?: string; scopes: string; groupsClaim: string; adminGroup?: string; label: string; timeoutMs: number } | null;
    ldap: {
      url: string; bindDn?: string; searchBase?: string; searchFilter: string; bindUser?: string; bindPassword?: string;
      mailAttribute: string; adminGroup?: string; label: string; timeoutMs: number;
      /** PEM file of CA certificates trusted for ldaps:// and StartTLS besides the system's */
      tlsCaFile?: string;
    } | null;
  };
}

export class ConfigError extends Error {}

/** Where the ingest listener's certificate and key are (PEM files). */
export interface TlsFiles {
  certFile: string;
  keyFile: string;
}

/**
 * Reads and checks the STARTTLS certificate and key: both readable PEM, the key unencrypted and
 * the certificate's. Throws a ConfigError naming the variable at fault; called at start-up and
 * again on SIGHUP (where an error keeps the certificate in use).
 */
export function readTlsFiles(files: TlsFiles): { cert: string; key: string } {
  const read = (name: string, file: string) => {
    try {
      return readBoundedFile(file, PEM_LIMIT).toString('utf8');
    } catch (err) {
      // Not fs's message: it quotes the value, and a key pasted in place of a path is a secret.
      const why = err instanceof FileRefused ? (err.reason === 'unreadable' ? err.detail : `it ${err.detail}`) : 'error';
      throw new ConfigError(`Invalid configuration: ${name}=${JSON.stringify(printable(name, file))} cannot be read (${why})`);
    }
  };
  const cert = read('SMTP_TLS_CERT', files.certFile);
  const key = read('SMTP_TLS_KEY', files.keyFile);
  let x509: crypto.X509Certificate;
  try {
    x509 = new crypto.X509Certificate(cert);
  } catch {
    throw new ConfigError(`Invalid configuration: SMTP_TLS_CERT=${JSON.stringify(files.certFile)} must be a PEM file starting with the server's certificate`);
  }
  let privateKey: crypto.KeyObject;
  try {
    privateKey = crypto.createPrivateKey(key);
  } catch {
    throw new ConfigError(`Invalid configuration: SMTP_TLS_KEY=${JSON.stringify(printable('SMTP_TLS_KEY', files.keyFile))} must be a PEM file with a private key without a passphrase`);
  }
  if (!x509.checkPrivateKey(privateKey)) {
    throw new ConfigError(`Invalid configuration: SMTP_TLS_KEY=${JSON.stringify(printable('SMTP_TLS_KEY', files.keyFile))} is not the key of the certificate in SMTP_TLS_CERT=${JSON.stringify(files.certFile)}`);
  }
  return { cert, key };
}

/** SMTP_TLS_CERT and SMTP_TLS_KEY go together, and SMTP_REQUIRE_TLS needs them. */
function ingestTls(e: { SMTP_TLS_CERT?: string; SMTP_TLS_KEY?: string; SMTP_REQUIRE_TLS: string }): { tls: TlsFiles | null; requireTls: boolean } {
  const requireTls = e.SMTP_REQUIRE_TLS === '1' || e.SMTP_REQUIRE_TLS === 'true';
  if (e.SMTP_TLS_CERT && !e.SMTP_TLS_KEY) throw new ConfigError('Invalid configuration: SMTP_TLS_KEY is not set, and SMTP_TLS_CERT needs it (STARTTLS is offered with both or neither)');
  if (e.SMTP_TLS_KEY && !e.SMTP_TLS_CERT) throw new ConfigError('Invalid configuration: SMTP_TLS_CERT is not set, and SMTP_TLS_KEY needs it (STARTTLS is offered with both or neither)');
  if (!e.SMTP_TLS_CERT || !e.SMTP_TLS_KEY) {
    if (requireTls) throw new ConfigError('Invalid configuration: SMTP_REQUIRE_TLS=1 needs SMTP_TLS_CERT and SMTP_TLS_KEY (without a certificate no client could send mail)');
    return { tls: null, requireTls };
  }
  const tls = { certFile: e.SMTP_TLS_CERT, keyFile: e.SMTP_TLS_KEY };
  readTlsFiles(tls);
  return { tls, requireTls };
}

/**
 * The ingest listener's memory budget by default: one maximum-size message at a time, or several
 * smaller ones summing to it (the bound the listener had when it took large messages one by one),
 * and at least 32 MB so that a small SMTP_MAX_SIZE does not make large messages queue.
 */
export function defaultMemoryBytes(maxSize: number): number {
  return Math.max(32 * 1024 * 1024, maxSize);
}

/**
 * DB_POOL_SIZE when unset: the most connections one process's pool opens. Each is a PostgreSQL
 * process of its own (several MB), and a fixed 20 per pool kept 40 of them under a web load that
 * two cores could not use (issue 14). PostgreSQL beside us runs at most a query per core at once:
 * twice the cores keeps each busy while the other half's answers travel, plus one, as the usual
 * formula has it; and at least five, for the ingest listener's group commit (three batches in
 * flight, src/db/group-commit.ts) beside a lookup and the delivery worker.
 */
export function defaultPoolSize(cores: number): number {
  return Math.max(5, 2 * cores + 1);
}

/**
 * DB_POOL_SIZE when unset, for a process that runs the web role alone (`serve --web`, and each of
 * WEB_PROCESSES): its queries come from one event loop, which on the machine's cores keeps one
 * query per core in flight and one more arriving; it has no group commit to set a floor. Two
 * backends fewer on two cores were 15–20 MB of the system's memory under the message page's load.
 */
export function webPoolSize(cores: number): number {
  return cores + 1;
}

export function parseConfig(env: Record<string, string | undefined>): Config {
  // Empty strings mean "unset": shells and compose files often export VAR= .
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const result = schema.safeParse(cleaned);
  if (!result.success) {
    const issue = result.error.issues[0];
    const name = String(issue.path[0] ?? 'configuration');
    throw new ConfigError(`Invalid configuration: ${name}=${JSON.stringify(printable(name, env[name] ?? ''))} ${issue.message}`);
  }
  const e = result.data;
  if (e.DATABASE_POOL_MODE === 'transaction' && (!e.DATABASE_URL || !e.DATABASE_DIRECT_URL)) {
    throw new ConfigError('Invalid configuration: DATABASE_POOL_MODE=transaction needs DATABASE_URL (the pooler) and DATABASE_DIRECT_URL (the server itself, for LISTEN, locks, migrations, imports and backups)');
  }
  const relayCredentials = e.RELAY_URL ? new URL(e.RELAY_URL).username !== '' : false;
  return {
    databaseUrl: e.DATABASE_URL,
    databaseReadUrl: e.DATABASE_READ_URL,
    databaseReadMaxLagMs: e.DATABASE_READ_MAX_LAG * 1000,
    databaseDirectUrl: e.DATABASE_DIRECT_URL,
    databasePoolMode: e.DATABASE_POOL_MODE,
    mailDomain: e.MAIL_DOMAIN.toLowerCase(),
    publicUrl: (e.PUBLIC_URL ?? defaultPublicUrl(e.WEB_HOST, e.WEB_PORT)).replace(/\/+$/, ''),
    smtp: {
      host: e.SMTP_HOST, port: e.SMTP_PORT, lmtp: e.SMTP_LMTP === '1' || e.SMTP_LMTP === 'true', maxSize: e.SMTP_MAX_SIZE,
      memoryBytes: e.SMTP_MEMORY_MB ? e.SMTP_MEMORY_MB * 1024 * 1024 : defaultMemoryBytes(e.SMTP_MAX_SIZE),
      dataTimeoutMs: e.SMTP_DATA_TIMEOUT * 1000,
      greetingDelayMs: e.SMTP_GREETING_DELAY_MS ?? null,
      ...ingestTls(e),
    },
    web: { host: e.WEB_HOST, port: e.WEB_PORT, pageCacheMb: e.PAGE_CACHE_MB, processes: e.WEB_PROCESSES, messageCacheMb: e.MESSAGE_CACHE_MB, apiRateLimit: e.API_RATE_LIMIT, maxDownloads: e.WEB_MAX_DOWNLOADS, rawAccess: e.ARCHIVE_RAW_ACCESS, trustProxy: proxyList(e.WEB_TRUST_PROXY)! },
    metrics: e.METRICS_PORT === undefined ? null : { host: e.METRICS_HOST, port: e.METRICS_PORT },
    relayUrl: e.RELAY_URL,
    relayTls: relayCredentials ? 'verify' : e.RELAY_TLS,
    relayTlsCa: e.RELAY_TLS_CA,
    heloName: (e.SMTP_HELO_NAME ?? e.MAIL_DOMAIN).toLowerCase(),
    spamCheck: { url: e.SPAM_CHECK_URL, fail: e.SPAM_CHECK_FAIL, timeoutMs: Math.round(e.SPAM_CHECK_TIMEOUT * 1000) },
    purge: { url: e.PURGE_URL, timeoutMs: Math.round(e.PURGE_TIMEOUT * 1000) },
    dnsServers: (e.DNS_SERVERS ?? '').split(',').map((s) => s.trim()).filter(Boolean),
    authCheckTimeoutMs: e.AUTH_CHECK_TIMEOUT_MS,
    postSynchronousCommit: e.POST_SYNCHRONOUS_COMMIT ?? null,
    dataDir: path.resolve(e.DATA_DIR),
    logLevel: e.LOG_LEVEL,
    logLevelSet: cleaned.LOG_LEVEL !== undefined,
    logRepeatSeconds: e.LOG_REPEAT_SECONDS,
    dbPoolSize: e.DB_POOL_SIZE ?? defaultPoolSize(os.availableParallelism()),
    webDbPoolSize: e.DB_POOL_SIZE ?? webPoolSize(os.availableParallelism()),
    conversions: { batchRows: e.CONVERSION_BATCH_ROWS, pauseMs: e.CONVERSION_PAUSE_MS },
    delivery: {
      batchSize: e.DELIVERY_BATCH_SIZE,
      connections: e.DELIVERY_CONNECTIONS,
      domainConnections: e.DELIVERY_DOMAIN_CONNECTIONS,
      mxPort: e.DELIVERY_MX_PORT,
      mxAllow: proxyList(e.DELIVERY_MX_ALLOW) ?? [],
      mxDeny: proxyList(e.DELIVERY_MX_DENY) ?? [],
      pollMs: e.DELIVERY_POLL_MS,
      leaseSeconds: e.DELIVERY_LEASE_SECONDS,
      timeoutSeconds: e.DELIVERY_TIMEOUT_SECONDS,
      dataDoneTimeoutSeconds: e.DELIVERY_DATA_DONE_TIMEOUT_SECONDS,
      giveUpHours: e.DELIVERY_GIVE_UP_HOURS,
      keepDays: e.DELIVERY_KEEP_DAYS,
    },
    confirmTokenHours: e.CONFIRM_TOKEN_HOURS,
    ownerAddsPerDay: e.OWNER_ADDS_PER_DAY,
    noticeFrom: (e.NOTICE_FROM ?? `listkeeper@${e.MAIL_DOMAIN}`).toLowerCase(),
    retention: {
      rejectedMaxKb: e.REJECTED_MAX_KB,
      rejectedPerSenderPerDay: e.REJECTED_PER_SENDER_PER_DAY,
      rejectedPerClientPerDay: e.REJECTED_PER_CLIENT_PER_DAY,
      rejectedPerDay: e.REJECTED_PER_DAY,
      keepRejectedDays: e.KEEP_REJECTED_DAYS,
      keepDecidedDays: e.KEEP_DECIDED_DAYS,
      keepBouncesDays: e.KEEP_BOUNCES_DAYS,
      heldExpireDays: e.HELD_EXPIRE_DAYS,
    },
    login: loginMethods(e),
  };
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

/** The ways to log in, checked together: each SSO method complete, and at least one way left in. */
function loginMethods(e: z.infer<typeof schema>): Config['login'] {
  let oidc: Config['login']['oidc'] = null;
  if (e.OIDC_ISSUER || e.OIDC_CLIENT_ID) {
    if (!e.OIDC_ISSUER || !e.OIDC_CLIENT_ID) throw new ConfigError('Invalid configuration: OIDC_ISSUER and OIDC_CLIENT_ID go together (OpenID Connect login needs both)');
    const issuer = new URL(e.OIDC_ISSUER);
    // Over plain http anyone on the way could forge the provider's keys and answers.
    if (issuer.protocol === 'http:' && !LOOPBACK.has(issuer.hostname)) {
      throw new ConfigError(`Invalid configuration: OIDC_ISSUER=${JSON.stringify(e.OIDC_ISSUER)} must be an https URL (http only for a loopback host)`);
    }
    oidc = {
      issuer: e.OIDC_ISSUER, clientId: e.OIDC_CLIENT_ID, clientSecret: e.OIDC_CLIENT_SECRET, scopes: e.OIDC_SCOPES.trim().split(/\s+/).join(' '),
      groupsClaim: e.OIDC_GROUPS_CLAIM, adminGroup: e.OIDC_ADMIN_GROUP, label: e.OIDC_LABEL, timeoutMs: Math.round(e.OIDC_TIMEOUT * 1000),
    };
  } else if (e.OIDC_CLIENT_SECRET || e.OIDC_ADMIN_GROUP) {
    throw new ConfigError('Invalid configuration: OIDC_CLIENT_SECRET and OIDC_ADMIN_GROUP need OIDC_ISSUER and OIDC_CLIENT_ID');
  }
  let ldap: Config['login']['ldap'] = null;
  if (e.LDAP_URL) {
    if (!e.LDAP_BIND_DN === !e.LDAP_SEARCH_BASE) {
      throw new ConfigError('Invalid configuration: LDAP_URL needs either LDAP_BIND_DN (a DN template with {user}) or LDAP_SEARCH_BASE (search, then bind), not both');
    }
    if (!e.LDAP_BIND_USER !== !e.LDAP_BIND_PASSWORD) throw new ConfigError('Invalid configuration: LDAP_BIND_USER and LDAP_BIND_PASSWORD go together');
    if (e.LDAP_BIND_USER && !e.LDAP_SEARCH_BASE) throw new ConfigError('Invalid configuration: LDAP_BIND_USER is only used with LDAP_SEARCH_BASE (search, then bind)');
    ldap = {
      url: e.LDAP_URL, bindDn: e.LDAP_BIND_DN, searchBase: e.LDAP_SEARCH_BASE, searchFilter: e.LDAP_SEARCH_FILTER, bindUser: e.LDAP_BIND_USER,
      bindPassword: e.LDAP_BIND_PASSWORD, mailAttribute: e.LDAP_MAIL_ATTRIBUTE, adminGroup: e.LDAP_ADMIN_GROUP, label: e.LDAP_LABEL,
      timeoutMs: Math.round(e.LDAP_TIMEOUT * 1000), tlsCaFile: e.LDAP_TLS_CA,
    };
  } else if (e.LDAP_BIND_DN || e.LDAP_SEARCH_BASE || e.LDAP_BIND_USER || e.LDAP_ADMIN_GROUP || e.LDAP_TLS_CA) {
    throw new ConfigError('Invalid configuration: LDAP_BIND_DN, LDAP_SEARCH_BASE, LDAP_BIND_USER, LDAP_ADMIN_GROUP and LDAP_TLS_CA need LDAP_URL');
  }
  const password = e.PASSWORD_LOGIN === 'on';
  const magicLink = e.MAGIC_LINK_LOGIN === 'on';
  if (!password && !magicLink && !oidc && !ldap) {
    throw new ConfigError('Invalid configuration: PASSWORD_LOGIN=off and MAGIC_LINK_LOGIN=off leave no way to log in (configure OIDC_ISSUER or LDAP_URL, or turn one back on)');
  }
  return { password, magicLink, oidc, ldap };
}

/**
 * PUBLIC_URL when unset: the web listener's own address. A wildcard host (0.0.0.0, ::) is no
 * address to link to, so links name 127.0.0.1; port 0 (an ephemeral port, known only once
 * listening) keeps the historical 8080.
 */
export function defaultPublicUrl(host: string, port: number): string {
  const name = host === '0.0.0.0' || host === '::' || host === '[::]' ? '127.0.0.1' : host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  return `http://${name}:${port === 0 ? 8080 : port}`;
}

/**
 * A value as an error message may show it: passwords in URLs as *** (valid URL or not), and
 * nothing at all of a variable named like a secret (configuration errors never print a secret).
 */
function printable(name: string, value: string): string {
  if (/PASSWORD|SECRET|TOKEN|_KEY$/.test(name)) return '***';
  return redactUrl(value);
}

/**
 * The variables of a `.env` file in `dir` (none when there is no such file), for config() to put
 * under the environment's own: NAME=VALUE lines as Node's parser reads them (`#` comments,
 * `export ` prefixes, quoted values, multi-line in double quotes). A line that is none of these
 * stops start-up with one line giving its number, never its text (it may hold a secret).
 */
// Settings, a few PEM blocks at most: a .env of more is a mistake, and is refused before being read.
const DOTENV_LIMIT = { limit: 1024 * 1024, what: 'a .env file' };

export function readDotEnv(dir: string): Record<string, string> {
  const file = path.join(dir, '.env');
  let text: string;
  try {
    text = readBoundedFile(file, DOTENV_LIMIT).toString('utf8');
  } catch (err) {
    if (err instanceof FileRefused && err.detail === 'ENOENT') return {};
    throw new ConfigError(`Invalid configuration: ${file} cannot be read (${err instanceof FileRefused ? (err.reason === 'unreadable' ? err.detail : `it ${err.detail}`) : 'error'})`);
  }
  const bad = malformedLine(text);
  if (bad) {
    throw new ConfigError(`Invalid configuration: ${file} line ${bad.line}: ${bad.quoted
      ? 'a quoted value with more after its closing quote (a quote left open, or one inside the value): quote the value whole, once'
      : 'expected NAME=VALUE (a name of letters, digits and _), a # comment or a blank line'}`);
  }
  return util.parseEnv(text) as Record<string, string>;
}

/**
 * The first line of a .env text that is not NAME=VALUE, a comment or blank, or null if none.
 * A quoted value must end at its closing quote (then only spaces or a # comment): Node's parser
 * drops whatever follows it, so a quote left open (`HELO="mx.example.org`) took the next lines
 * into its value up to the next quote, `DATABASE_URL="postgres://…"` among them, and the command
 * ran on the embedded database instead, saying nothing; `A="x"y` and `A="a\"b"` lost their ends.
 */
function malformedLine(text: string): { line: number; quoted: boolean } | null {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  let open: string | null = null; // the quote of a value that goes on over several lines
  let opened = 0; // the line that value started on
  const endsClean = (rest: string) => /^\s*(#.*)?$/.test(rest);
  for (const [i, line] of lines.entries()) {
    if (open) {
      const close = line.indexOf(open);
      if (close < 0) continue;
      if (!endsClean(line.slice(close + 1))) return { line: opened, quoted: true };
      open = null;
      continue;
    }
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    // `export` and one space, exactly as Node's parser strips it: after two spaces or a tab it
    // read the variable as " NAME" or "export\tNAME", and NAME went unset without a word.
    const m = /^(?:export )?[A-Za-z_][A-Za-z0-9_.-]*\s*=\s*(.*)$/.exec(trimmed);
    if (!m) return { line: i + 1, quoted: false };
    const quote = m[1][0];
    if (quote !== '"' && quote !== "'" && quote !== '`') continue;
    const close = m[1].indexOf(quote, 1);
    if (close < 0) [open, opened] = [quote, i + 1];
    else if (!endsClean(m[1].slice(close + 1))) return { line: i + 1, quoted: true };
  }
  return null;
}

let loaded: Config | undefined;

/**
 * The process configuration, parsed on first use from the environment over the `.env` file of
 * the working directory: a variable set in both takes the environment's value.
 */
export function config(): Config {
  if (!loaded) {
    loaded = parseConfig({ ...readDotEnv(process.cwd()), ...process.env });
    log.level = loaded.logLevel;
    setRepeatSummarySeconds(loaded.logRepeatSeconds);
  }
  return loaded;
}

/** Forgets the parsed configuration: the next config() reads the environment again (tests). */
export function forgetConfig(): void {
  loaded = undefined;
}
