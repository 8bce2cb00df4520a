import os from 'node:os';
import type { Config } from '../config.ts';
import type { Logger } from '../log.ts';
import { resolvers } from './dns.ts';
import { SmtpPool, type Envelope, type SendResult, type SmtpTarget } from './smtp-pool.ts';

/**
 * Where copies go: one pooled relay (RELAY_URL, e.g. a local Postfix), or each recipient
 * domain's MX hosts directly, with a small connection limit per host.
 */
export interface Transport {
  send(domain: string, envelope: Envelope, message: Buffer): Promise<SendResult>;
  /** how many sends to keep in flight */
  readonly lanes: number;
  close(): void;
}

export function createTransport(cfg: Config, log: Logger): Transport {
  return cfg.relayUrl ? new RelayTransport(relayTarget(cfg.relayUrl), cfg.delivery.connections, log) : new MxTransport(cfg, log);
}

export function relayTarget(relayUrl: string): SmtpTarget {
  const u = new URL(relayUrl);
  const secure = u.protocol === 'smtps:';
  return {
    host: u.hostname,
    port: u.port ? Number(u.port) : secure ? 465 : 25,
    secure,
    auth: u.username ? { user: decodeURIComponent(u.username), pass: decodeURIComponent(u.password) } : undefined,
    name: os.hostname(),
  };
}

export class RelayTransport implements Transport {
  private pool: SmtpPool;
  readonly lanes: number;

  constructor(target: SmtpTarget, connections: number, log: Logger) {
    this.pool = new SmtpPool(target, connections, log.child({ relay: `${target.host}:${target.port}` }));
    this.lanes = connections;
  }

  send(_domain: string, envelope: Envelope, message: Buffer): Promise<SendResult> {
    return this.pool.send(envelope, message);
  }

  close() {
    this.pool.close();
  }
}

const MX_CACHE_MS = 5 * 60_000;

export class MxTransport implements Transport {
  private pools = new Map<string, SmtpPool>();
  private mx = new Map<string, { hosts: string[]; expires: number }>();
  readonly lanes: number;

  constructor(private cfg: Config, private log: Logger) {
    this.lanes = Math.max(cfg.delivery.connections, cfg.delivery.domainConnections);
  }

  async send(domain: string, envelope: Envelope, message: Buffer): Promise<SendResult> {
    let hosts: string[];
    try {
      hosts = await this.hosts(domain);
    } catch (err) {
      const code = (err as { code?: string }).code;
      const permanent = code === 'ENOTFOUND';
      return { ok: false, temporary: !permanent, code: permanent ? 550 : null, response: `${permanent ? '5.1.2' : '4.4.3'} MX lookup for ${domain} failed: ${code ?? (err as Error).message}`, stage: 'RCPT TO' };
    }
    if (hosts.length === 0) return { ok: false, temporary: false, code: 556, response: `5.1.10 ${domain} does not accept mail (null MX)`, stage: 'RCPT TO' };
    let last: SendResult | null = null;
    for (const host of hosts) {
      last = await this.pool(host).send(envelope, message);
      // Only a failure to talk to this host at all moves on to the next MX.
      if (last.ok || last.code !== null) return last;
    }
    return last!;
  }

  private async hosts(domain: string): Promise<string[]> {
    const cached = this.mx.get(domain);
    if (cached && cached.expires > Date.now()) return cached.hosts;
    let hosts: string[];
    try {
      const records = await resolvers().mx(domain);
      hosts = records.sort((a, b) => a.priority - b.priority).map((r) => r.exchange);
      if (hosts.length === 1 && (hosts[0] === '' || hosts[0] === '.')) hosts = []; // RFC 7505 null MX
    } catch (err) {
      // No MX record: the domain itself is the mail host (RFC 5321 §5.1).
      if ((err as { code?: string }).code !== 'ENODATA') throw err;
      hosts = [domain];
    }
    this.mx.set(domain, { hosts, expires: Date.now() + MX_CACHE_MS });
    return hosts;
  }

  private pool(host: string): SmtpPool {
    let pool = this.pools.get(host);
    if (!pool) {
      pool = new SmtpPool(
        { host, port: this.cfg.delivery.mxPort, secure: false, opportunisticTLS: true, name: this.cfg.mailDomain },
        this.cfg.delivery.domainConnections,
        this.log.child({ mx: host }),
        { idleMs: 10_000, maxMessages: 100 },
      );
      this.pools.set(host, pool);
    }
    return pool;
  }

  close() {
    for (const p of this.pools.values()) p.close();
    this.pools.clear();
  }
}
