/*
 * The wait before the 220 greeting. A client that speaks before it (spamware that does not wait
 * for the server: an "early talker") is answered 421 and disconnected by smtp-server. The library
 * waits a fixed 100 ms on every connection, which caps a sender that opens a connection per
 * message (smtp-source without -d, many MTAs) at ten messages a second per session, whatever the
 * CPU. Here the wait is chosen per peer: none where nobody early-talks, the library's 100 ms
 * elsewhere, or what SMTP_GREETING_DELAY_MS says. Before it, a peer from the network that already
 * holds MAX_SESSIONS_PER_CLIENT sessions is answered 421.
 */

import { isIP, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { SMTPConnection, type SMTPConnectionOptions } from 'smtp-server/lib/smtp-connection.js';
import { clientKey } from '../db/rate-limits.ts';

/** smtp-server's own wait, kept for peers on the network. */
export const DEFAULT_GREETING_DELAY_MS = 100;

/** 127.0.0.0/8 and ::1, also as IPv4-mapped IPv6 (a dual-stack listener's view of 127.0.0.1). */
export function isLoopback(address: string): boolean {
  const a = address.toLowerCase().replace(/^::ffff:/, '');
  return a === '::1' || (isIP(a) === 4 && a.startsWith('127.'));
}

/**
 * The wait for one peer. configured: SMTP_GREETING_DELAY_MS, null when unset. Unset, an LMTP
 * client (our own MTA, which faced the internet and did its own checks) and a loopback peer (a
 * local MTA or script) are greeted at once, others after DEFAULT_GREETING_DELAY_MS. Set, it
 * applies to every peer: behind a local proxy every peer looks like loopback, and the operator
 * who keeps the check there says so.
 */
export function greetingDelayMs(peer: string, opts: { lmtp: boolean; configured: number | null }): number {
  if (opts.configured !== null) return opts.configured;
  return opts.lmtp || isLoopback(peer) ? 0 : DEFAULT_GREETING_DELAY_MS;
}

/**
 * Sessions one client address may hold at once, as Postfix's smtpd_client_connection_count_limit:
 * past it, 421. maxClients is for the whole listener, and one address that held all 500 of its
 * sessions open (a byte now and then) shut every other sender out. Not limited: an LMTP client
 * (our own MTA, every session is its) and a loopback peer (a local MTA; behind a local proxy
 * every peer looks like loopback, and one limit for all would be the listener's). An IPv6 client
 * is counted by its /64, as every limit per address is (clientKey): counted by its address, one
 * host that took 500 of its network's 2^64 addresses held all 500 sessions again.
 */
export const MAX_SESSIONS_PER_CLIENT = 50;

export function sessionLimit(peer: string, opts: { lmtp: boolean }): number | null {
  return opts.lmtp || isLoopback(peer) ? null : MAX_SESSIONS_PER_CLIENT;
}

/** What a peer gets before the greeting: the wait, and how many sessions it may hold (null: no limit of its own). */
export interface PeerPolicy {
  delayMs(peer: string): number;
  sessionLimit(peer: string): number | null;
}

/** smtp-server's connection with the wait before the greeting and the limit per client chosen by the policy. */
class GreetingConnection extends SMTPConnection {
  constructor(server: SMTPServer, socket: Socket | TLSSocket, options: SMTPConnectionOptions | null | undefined, private policy: PeerPolicy) {
    super(server, socket, options);
  }

  /** smtp-server's init() (listeners, then the maxClients check), with our limit per client and our wait instead of its 100 ms. */
  override init(): void {
    this._setListeners(() => {
      const { maxClients } = this._server.options;
      if (maxClients && this._server.connections.size > maxClients) {
        return this.send(421, `${this.name} Too many connected clients, try again in a moment`, false);
      }
      const limit = this.policy.sessionLimit(this.remoteAddress);
      if (limit !== null && sessionsFrom(this._server.connections, this.remoteAddress) > limit) {
        return this.send(421, `4.7.0 ${this.name} too many connections from your address, try again later`, false);
      }
      // Until connectionReady() has sent the greeting (after the reverse lookup, even with no
      // wait), a command is still refused with 421 "You talk too soon".
      const delay = this.policy.delayMs(this.remoteAddress);
      if (delay === 0) return this.connectionReady();
      // unref: a pending greeting does not keep the process alive (as in smtp-server)
      setTimeout(() => this.connectionReady(), delay).unref();
    });
  }
}

/** The sessions open from one client (this one's included): one IPv4 address, one IPv6 /64. */
function sessionsFrom(connections: Set<{ remoteAddress: string }>, address: string): number {
  const client = clientKey(address);
  let n = 0;
  for (const c of connections) if (clientKey(c.remoteAddress) === client) n++;
  return n;
}

/**
 * SMTPServer whose connections follow a PeerPolicy before the greeting. The library has no option
 * for it; connect() is its public hook for a new socket, repeated here with our connection class.
 */
export class GreetingServer extends SMTPServer {
  constructor(options: SMTPServerOptions, private policy: PeerPolicy) {
    super(options);
  }

  override connect(socket: Socket | TLSSocket, socketOptions?: SMTPConnectionOptions | null): void {
    const connection = new GreetingConnection(this, socket, socketOptions, this.policy);
    this.connections.add(connection);
    connection.on('error', (err: Error) => this._onError(err));
    connection.on('connect', (data) => this._onClientConnect(data));
    connection.init();
  }
}
