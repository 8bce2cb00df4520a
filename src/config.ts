/*
 * The only reader of process.env. One schema, parsed once; a bad value stops start-up with one
 * line naming the variable. Every variable is described in docs/configuration.md.
 */

import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { log, redactUrl } from './log.ts';

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

function readablePem(file: string): boolean {
  try {
    return fs.readFileSync(file, 'utf8').includes('-----BEGIN CERTIFICATE-----');
  } catch {
    return false;
  }
}

/** Postfix's smtp_tls_security_level may / encrypt / verify, for the relay (docs/configuration.md, RELAY_TLS). */
export type RelayTls = 'opportunistic' | 'require' | 'verify';

const schema = z.object({
  DATABASE_URL: url(['postgres:', 'postgresql:']).optional(),
  DATABASE_READ_URL: url(['postgres:', 'postgresql:']).optional(),
  MAIL_DOMAIN: domain.default('lists.localhost'),
  PUBLIC_URL: url(['http:', 'https:']).default('http://127.0.0.1:8080'),
  SMTP_HOST: z.string().min(1).default('127.0.0.1'),
  SMTP_PORT: port.default(2525),
  SMTP_LMTP: z.enum(['0', '1', 'true', 'false']).default('0'),
  SMTP_MAX_SIZE: positiveInt.default(25 * 1024 * 1024),
  SMTP_MEMORY_MB: positiveInt.optional(),
  SMTP_DATA_TIMEOUT: positiveInt.default(600),
  WEB_HOST: z.string().min(1).default('127.0.0.1'),
  WEB_PORT: port.default(8080),
  PAGE_CACHE_MB: z.coerce.number().int().min(0).default(64),
  MESSAGE_CACHE_MB: z.coerce.number().int().min(0).default(64),
  WEB_PROCESSES: z.coerce.number().int().min(1).max(64).default(1),
  RELAY_URL: url(['smtp:', 'smtps:']).optional(),
  RELAY_TLS: z.enum(['opportunistic', 'require', 'verify']).default('opportunistic'),
  RELAY_TLS_CA: z.string().refine(readablePem, 'must be a readable PEM file of CA certificates').optional(),
  SMTP_HELO_NAME: domain.optional(),
  AUTH_CHECK_TIMEOUT_MS: z.coerce.number().int().min(100).max(60_000).default(10_000),
  DNS_SERVERS: z.string().regex(/^\s*(\[[0-9a-f:.]+\]|[0-9a-z.:-]+)(:\d+)?(\s*,\s*(\[[0-9a-f:.]+\]|[0-9a-z.:-]+)(:\d+)?)*\s*$/i, 'must be comma-separated host or host:port resolvers').optional(),
  DATA_DIR: z.string().min(1).default('./data'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  DB_POOL_SIZE: positiveInt.default(20),
  // Delivery (docs/delivery.md; each variable in docs/configuration.md)
  DELIVERY_BATCH_SIZE: positiveInt.default(500),
  DELIVERY_CONNECTIONS: positiveInt.default(16),
  DELIVERY_DOMAIN_CONNECTIONS: positiveInt.default(3),
  DELIVERY_MX_PORT: port.default(25),
  DELIVERY_POLL_MS: positiveInt.default(5000),
  DELIVERY_LEASE_SECONDS: positiveInt.default(60),
  DELIVERY_TIMEOUT_SECONDS: positiveInt.default(30),
  DELIVERY_GIVE_UP_HOURS: z.coerce.number().positive().default(120),
  DELIVERY_KEEP_DAYS: positiveInt.default(7),
  CONFIRM_TOKEN_HOURS: positiveInt.default(72),
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
});

export interface Config {
  databaseUrl?: string;
  databaseReadUrl?: string;
  mailDomain: string;
  publicUrl: string;
  /**
   * memoryBytes: message data the listener holds at once across sessions (src/smtp/memory-budget.ts);
   * dataTimeoutMs: the longest DATA phase before a 451 and a closed connection.
   */
  smtp: { host: string; port: number; lmtp: boolean; maxSize: number; memoryBytes: number; dataTimeoutMs: number };
  /**
   * pageCacheMb: rendered public archive pages kept in memory (per process); 0 turns the cache off.
   * processes: web processes sharing the port (src/web/processes.ts); 1 serves from `serve` itself.
   * messageCacheMb: parsed messages kept in memory (per process) for their pages and attachments.
   */
  web: { host: string; port: number; pageCacheMb: number; processes: number; messageCacheMb: number };
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
  /** resolvers for every lookup (DNS_SERVERS); empty: the system's */
  dnsServers: string[];
  /**
   * The longest a post's authentication checks (SPF, DKIM, DMARC, ARC) may take, all lookups
   * together; past it the methods not finished are recorded as temperror and the post goes on.
   */
  authCheckTimeoutMs: number;
  dataDir: string;
  logLevel: string;
  /** LOG_LEVEL was given explicitly (one-shot commands are quieter by default) */
  logLevelSet: boolean;
  dbPoolSize: number;
  delivery: {
    batchSize: number;
    connections: number;
    domainConnections: number;
    mxPort: number;
    pollMs: number;
    leaseSeconds: number;
    /** deadline of each network wait: connecting, the greeting, each command, the end of DATA */
    timeoutSeconds: number;
    giveUpHours: number;
    keepDays: number;
  };
  confirmTokenHours: number;
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
}

export class ConfigError extends Error {}

/**
 * The ingest listener's memory budget by default: one maximum-size message at a time, or several
 * smaller ones summing to it (the bound the listener had when it took large messages one by one),
 * and at least 32 MB so that a small SMTP_MAX_SIZE does not make large messages queue.
 */
export function defaultMemoryBytes(maxSize: number): number {
  return Math.max(32 * 1024 * 1024, maxSize);
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
  const relayCredentials = e.RELAY_URL ? new URL(e.RELAY_URL).username !== '' : false;
  return {
    databaseUrl: e.DATABASE_URL,
    databaseReadUrl: e.DATABASE_READ_URL,
    mailDomain: e.MAIL_DOMAIN.toLowerCase(),
    publicUrl: e.PUBLIC_URL.replace(/\/+$/, ''),
    smtp: {
      host: e.SMTP_HOST, port: e.SMTP_PORT, lmtp: e.SMTP_LMTP === '1' || e.SMTP_LMTP === 'true', maxSize: e.SMTP_MAX_SIZE,
      memoryBytes: e.SMTP_MEMORY_MB ? e.SMTP_MEMORY_MB * 1024 * 1024 : defaultMemoryBytes(e.SMTP_MAX_SIZE),
      dataTimeoutMs: e.SMTP_DATA_TIMEOUT * 1000,
    },
    web: { host: e.WEB_HOST, port: e.WEB_PORT, pageCacheMb: e.PAGE_CACHE_MB, processes: e.WEB_PROCESSES, messageCacheMb: e.MESSAGE_CACHE_MB },
    relayUrl: e.RELAY_URL,
    relayTls: relayCredentials ? 'verify' : e.RELAY_TLS,
    relayTlsCa: e.RELAY_TLS_CA,
    heloName: (e.SMTP_HELO_NAME ?? e.MAIL_DOMAIN).toLowerCase(),
    dnsServers: (e.DNS_SERVERS ?? '').split(',').map((s) => s.trim()).filter(Boolean),
    authCheckTimeoutMs: e.AUTH_CHECK_TIMEOUT_MS,
    dataDir: path.resolve(e.DATA_DIR),
    logLevel: e.LOG_LEVEL,
    logLevelSet: cleaned.LOG_LEVEL !== undefined,
    dbPoolSize: e.DB_POOL_SIZE,
    delivery: {
      batchSize: e.DELIVERY_BATCH_SIZE,
      connections: e.DELIVERY_CONNECTIONS,
      domainConnections: e.DELIVERY_DOMAIN_CONNECTIONS,
      mxPort: e.DELIVERY_MX_PORT,
      pollMs: e.DELIVERY_POLL_MS,
      leaseSeconds: e.DELIVERY_LEASE_SECONDS,
      timeoutSeconds: e.DELIVERY_TIMEOUT_SECONDS,
      giveUpHours: e.DELIVERY_GIVE_UP_HOURS,
      keepDays: e.DELIVERY_KEEP_DAYS,
    },
    confirmTokenHours: e.CONFIRM_TOKEN_HOURS,
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
  };
}

/**
 * A value as an error message may show it: passwords in URLs as *** (valid URL or not), and
 * nothing at all of a variable named like a secret (configuration errors never print a secret).
 */
function printable(name: string, value: string): string {
  if (/PASSWORD|SECRET|TOKEN|_KEY$/.test(name)) return '***';
  return redactUrl(value);
}

let loaded: Config | undefined;

/** The process configuration, parsed from the environment on first use. */
export function config(): Config {
  if (!loaded) {
    loaded = parseConfig(process.env);
    log.level = loaded.logLevel;
  }
  return loaded;
}
