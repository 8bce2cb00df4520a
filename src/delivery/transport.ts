/*
 * Where copies go: one pooled relay (RELAY_URL, e.g. a local Postfix), or each recipient
 * domain's MX hosts directly, with a small connection limit per host.
 */

import { PEM_LIMIT, readBoundedFile } from '../read-file.ts';
import net, { type BlockList } from 'node:net';
import tls from 'node:tls';
import type { Config } from '../config.ts';
import type { Logger } from '../log.ts';
import { beforeDeadline } from '../deadline.ts';
import { resolvers } from '../dns.ts';
import { networkList, refusedAddress } from './mx-addresses.ts';
import { sessionFailure, SmtpPool, type Envelope, type PoolTimeouts, type SendClock, type SendResult, type SevenBit, type SmtpTarget } from './smtp-pool.ts';

export type { SendClock };

export interface Transport {
  /**
   * `sevenBit`: the copy for a server that does not offer 8BITMIME (smtp-session.ts); `clock`:
   * kept at the time the send must have ended by (SendClock), for the worker's heartbeat
   */
  send(domain: string, envelope: Envelope, message: Buffer, sevenBit?: SevenBit, clock?: SendClock): Promise<SendResult>;
  /** how many sends to keep in flight */
  readonly lanes: number;
  /**
   * how many of them the domains of one laneKey() may take (direct MX: their hosts' connection
   * limit, so lanes beyond it wait in the pool while other domains' copies could go); none for a
   * relay
   */
  readonly domainLanes?: number;
  /** what a domain's sends in flight count against (with domainLanes); never rejects */
  laneKey?(domain: string): Promise<string>;
  /** closes idle connections; sends in progress finish */
  close(): void;
  /** destroys every connection now; sends in progress return `aborted` (shutdown) */
  abort(): void;
}

export function createTransport(cfg: Config, log: Logger): Transport {
  return cfg.relayUrl ? new RelayTransport(relayTarget(cfg), cfg.delivery.connections, log, poolTimeouts(cfg)) : new MxTransport(cfg, log);
}

/**
 * The deadlines of outbound SMTP: DELIVERY_TIMEOUT_SECONDS for each network wait,
 * DELIVERY_DATA_DONE_TIMEOUT_SECONDS for the reply to the final dot, and for one copy as a whole
 * two thirds of the lease until its message is handed over, the data-done wait more after it. A
 * send is known to the worker's heartbeat by that deadline (SendClock), not by the lease: one
 * waiting its ten minutes for a reply keeps the worker alive, one past its deadline does not.
 */
export function poolTimeouts(cfg: Config): PoolTimeouts {
  return {
    stepMs: cfg.delivery.timeoutSeconds * 1000,
    dataDoneMs: cfg.delivery.dataDoneTimeoutSeconds * 1000,
    copyMs: Math.max(1000, Math.floor((cfg.delivery.leaseSeconds * 1000 * 2) / 3)),
  };
}

export function relayTarget(cfg: Pick<Config, 'relayUrl' | 'relayTls' | 'relayTlsCa' | 'heloName'>): SmtpTarget {
  const u = new URL(cfg.relayUrl!);
  const secure = u.protocol === 'smtps:';
  return {
    host: u.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: u.port ? Number(u.port) : secure ? 465 : 25,
    secure,
    auth: u.username ? { user: decodeURIComponent(u.username), pass: decodeURIComponent(u.password) } : undefined,
    name: cfg.heloName,
    tls: cfg.relayTls,
    // Built once: a context with the system's CAs costs milliseconds, a connection should not pay it.
    secureContext: cfg.relayTlsCa ? tls.createSecureContext({ ca: [...tls.rootCertificates, readBoundedFile(cfg.relayTlsCa, PEM_LIMIT).toString('utf8')] }) : undefined,
  };
}

export class RelayTransport implements Transport {
  private pool: SmtpPool;
  readonly lanes: number;

  constructor(target: SmtpTarget, connections: number, log: Logger, timeouts: PoolTimeouts) {
    this.pool = new SmtpPool(target, connections, log.child({ relay: `${target.host}:${target.port}` }), timeouts);
    this.lanes = connections;
  }

  send(_domain: string, envelope: Envelope, message: Buffer, sevenBit?: SevenBit, clock?: SendClock): Promise<SendResult> {
    return this.pool.send(envelope, message, sevenBit, undefined, clock);
  }

  close() {
    this.pool.close();
  }

  abort() {
    this.pool.abort();
  }
}

/**
 * How long MX answers are kept; how often the transport's one timer closes idle connections and
 * forgets expired answers and pools unused for `poolIdleMs` (otherwise both grew with every
 * domain and MX address the worker ever sent to, each pool with a timer of its own); and how long
 * a connection may stay idle.
 */
export interface MxTuning {
  mxCacheMs: number;
  sweepMs: number;
  poolIdleMs: number;
  connectionIdleMs: number;
}

const MX_TUNING: MxTuning = { mxCacheMs: 5 * 60_000, sweepMs: 5_000, poolIdleMs: 3 * 60_000, connectionIdleMs: 10_000 };
/**
 * Addresses tried for one copy, over all its MX hosts (Postfix's smtp_mx_address_limit): a
 * domain that publishes hundreds of MX records, each silent, cost a lane one connection timeout
 * per record.
 */
const MX_ADDRESSES_TRIED = 5;

/** A domain's MX hosts in the order tried, and its lane key: its most preferred hosts. */
interface MxAnswer {
  hosts: string[];
  lane: string;
}

export class MxTransport implements Transport {
  private pools = new Map<string, SmtpPool>();
  private mx = new Map<string, MxAnswer & { expires: number }>();
  private closed = false;
  private readonly allow: BlockList;
  private readonly deny: BlockList;
  private readonly sweeper: NodeJS.Timeout;
  private readonly tuning: MxTuning;
  readonly lanes: number;
  readonly domainLanes: number;

  constructor(private cfg: Config, private log: Logger, tuning: Partial<MxTuning> = {}) {
    this.lanes = Math.max(cfg.delivery.connections, cfg.delivery.domainConnections);
    this.domainLanes = cfg.delivery.domainConnections;
    this.allow = networkList(cfg.delivery.mxAllow);
    this.deny = networkList(cfg.delivery.mxDeny);
    this.tuning = { ...MX_TUNING, ...tuning };
    this.sweeper = setInterval(() => this.sweep(), this.tuning.sweepMs);
    this.sweeper.unref();
  }

  /** MX answers and pools held now (tests) */
  get cached(): { domains: number; pools: number } {
    return { domains: this.mx.size, pools: this.pools.size };
  }

  private sweep() {
    const now = performance.now();
    for (const [domain, entry] of this.mx) if (entry.expires <= now) this.mx.delete(domain);
    for (const [address, pool] of this.pools) {
      // Only a pool nothing uses: no send, no connection, no waiter (a send takes one of these
      // at once, in the same turn as pool() hands the pool out).
      const since = pool.unusedSince;
      if (since !== null && now - since >= this.tuning.poolIdleMs) {
        pool.close();
        this.pools.delete(address);
      } else pool.sweep();
    }
  }

  async send(domain: string, envelope: Envelope, message: Buffer, sevenBit?: SevenBit, clock?: SendClock): Promise<SendResult> {
    // One deadline for the copy, whichever MX hosts it goes through, lookups included.
    const end = performance.now() + poolTimeouts(this.cfg).copyMs;
    if (clock) clock.at = end;
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
    const unusable: string[] = [];
    let tried = 0;
    for (const host of hosts) {
      if (tried >= MX_ADDRESSES_TRIED || performance.now() >= end) break;
      let addresses: string[];
      try {
        addresses = await beforeDeadline(this.addresses(host), end, () => Object.assign(new Error('timed out'), { code: 'ETIMEOUT' }));
      } catch (err) {
        unusable.push(`${host}: address lookup failed (${(err as { code?: string }).code ?? (err as Error).message})`);
        continue;
      }
      for (const address of addresses) {
        if (tried >= MX_ADDRESSES_TRIED || performance.now() >= end) break;
        const refused = refusedAddress(address, this.allow, this.deny);
        if (refused) {
          unusable.push(`${host} is ${address}, ${refused}`);
          continue;
        }
        if (this.closed) {
          // A copy perhaps delivered by the last host is recorded so, not given back untouched.
          if (last && !last.ok && last.maybeDelivered) return last;
          return { ok: false, temporary: true, code: null, response: 'ESHUTDOWN: delivery is shutting down', stage: 'CONN', aborted: true };
        }
        tried++;
        last = await this.pool(host, address).send(envelope, message, sevenBit, end, clock);
        // Only a host that would not hold a session (no connection, 4xx/5xx greeting, EHLO, TLS)
        // moves on to the next MX.
        if (!sessionFailure(last)) return last;
      }
      if (addresses.length === 0) unusable.push(`${host}: no address`);
    }
    if (last) return last;
    // Deferred, not failed: the domain's DNS may be put right.
    const why = unusable.length > 0 ? unusable.slice(0, 3).join('; ') : 'no time left';
    return { ok: false, temporary: true, code: null, response: `4.4.4 no MX host of ${domain} may be connected to: ${why}`, stage: 'CONN' };
  }

  /** The host's addresses, IPv4 first, looked up through resolvers() (DNS_SERVERS, its deadlines). */
  private async addresses(host: string): Promise<string[]> {
    if (net.isIP(host)) return [host];
    const family = (rrtype: string) =>
      (resolvers().resolve(host, rrtype) as Promise<string[]>).then(
        (found) => ({ found, err: null }),
        (err: { code?: string }) => ({ found: [] as string[], err: err.code === 'ENODATA' || err.code === 'ENOTFOUND' ? null : err }),
      );
    const [v4, v6] = await Promise.all([family('A'), family('AAAA')]);
    const found = [...v4.found, ...v6.found].filter((a) => typeof a === 'string' && net.isIP(a));
    if (found.length === 0 && (v4.err || v6.err)) throw v4.err ?? v6.err;
    return found;
  }

  private async hosts(domain: string): Promise<string[]> {
    return (await this.answer(domain)).hosts;
  }

  /**
   * The domain's most preferred MX hosts, by name: domains served by the same hosts (gmail.com and
   * googlemail.com) share one limit of sends in flight, as they share the hosts' connections. The
   * domain itself when its MX lookup fails.
   */
  async laneKey(domain: string): Promise<string> {
    return this.answer(domain).then((a) => a.lane, () => domain);
  }

  private async answer(domain: string): Promise<MxAnswer> {
    const cached = this.mx.get(domain);
    if (cached && cached.expires > performance.now()) return cached;
    let answer: MxAnswer;
    try {
      const records = (await resolvers().mx(domain)).sort((a, b) => a.priority - b.priority);
      const best = records.filter((r) => r.priority === records[0].priority);
      answer = { hosts: records.map((r) => r.exchange), lane: best.map((r) => r.exchange.toLowerCase().replace(/\.$/, '')).sort().join(' ') || domain };
      // RFC 7505 null MX
      if (answer.hosts.length === 1 && (answer.hosts[0] === '' || answer.hosts[0] === '.')) answer = { hosts: [], lane: domain };
    } catch (err) {
      // No MX record: the domain itself is the mail host (RFC 5321 §5.1).
      if ((err as { code?: string }).code !== 'ENODATA') throw err;
      answer = { hosts: [domain], lane: domain.toLowerCase() };
    }
    this.mx.set(domain, { ...answer, expires: performance.now() + this.tuning.mxCacheMs });
    return answer;
  }

  /** One pool per address: the connection limit is per server, whatever names point to it. */
  private pool(host: string, address: string): SmtpPool {
    let pool = this.pools.get(address);
    if (!pool) {
      pool = new SmtpPool(
        // The address checked above, not the name, which nodemailer would look up again (and a
        // name's owner may answer differently the second time). STARTTLS whenever offered; a
        // certificate is not checked (no MX publishes which to expect without DANE or MTA-STS),
        // as Postfix's default "may".
        { host: address, servername: net.isIP(host) ? undefined : host, port: this.cfg.delivery.mxPort, secure: false, tls: 'opportunistic', name: this.cfg.heloName },
        this.cfg.delivery.domainConnections,
        this.log.child({ mx: host, address }),
        poolTimeouts(this.cfg),
        { idleMs: this.tuning.connectionIdleMs, maxMessages: 100, sweep: false },
      );
      this.pools.set(address, pool);
    }
    return pool;
  }

  close() {
    this.closed = true;
    clearInterval(this.sweeper);
    for (const p of this.pools.values()) p.close();
    this.pools.clear();
  }

  abort() {
    this.closed = true;
    clearInterval(this.sweeper);
    for (const p of this.pools.values()) p.abort();
    this.pools.clear();
  }
}
