/*
 * Which addresses direct delivery may connect to. An MX record is written by whoever owns the
 * recipient's domain, a member's or an attacker's: one that names 127.0.0.1, 10.0.0.5 or
 * 169.254.169.254 would make the worker speak SMTP to this machine's own services or to the
 * private network behind it. Only public unicast addresses are used, and none of this machine's
 * own, unless the operator names the network (DELIVERY_MX_ALLOW).
 */

import net from 'node:net';
import os from 'node:os';

/** Not public unicast: special-purpose ranges (RFC 6890 and its updates), multicast, reserved. */
const NOT_PUBLIC: [string, number, 'ipv4' | 'ipv6'][] = [
  ['0.0.0.0', 8, 'ipv4'],
  ['10.0.0.0', 8, 'ipv4'],
  ['100.64.0.0', 10, 'ipv4'],
  ['127.0.0.0', 8, 'ipv4'],
  ['169.254.0.0', 16, 'ipv4'],
  ['172.16.0.0', 12, 'ipv4'],
  ['192.0.0.0', 24, 'ipv4'],
  ['192.0.2.0', 24, 'ipv4'],
  ['192.88.99.0', 24, 'ipv4'],
  ['192.168.0.0', 16, 'ipv4'],
  ['198.18.0.0', 15, 'ipv4'],
  ['198.51.100.0', 24, 'ipv4'],
  ['203.0.113.0', 24, 'ipv4'],
  ['224.0.0.0', 3, 'ipv4'], // multicast, reserved, broadcast
  ['::', 96, 'ipv6'], // unspecified, loopback, IPv4-compatible (::ffff:a.b.c.d is read by plain())
  ['::ffff:0:0:0', 96, 'ipv6'], // IPv4-translated
  ['64:ff9b:1::', 48, 'ipv6'],
  ['100::', 64, 'ipv6'],
  ['2001::', 23, 'ipv6'],
  ['2001:db8::', 32, 'ipv6'],
  ['2002::', 16, 'ipv6'], // 6to4: embeds any IPv4 address
  ['fc00::', 7, 'ipv6'],
  ['fe80::', 10, 'ipv6'],
  ['fec0::', 10, 'ipv6'],
  ['ff00::', 8, 'ipv6'],
];

const NAMED: Record<string, [string, number, 'ipv4' | 'ipv6'][]> = {
  loopback: [['127.0.0.0', 8, 'ipv4'], ['::1', 128, 'ipv6']],
  linklocal: [['169.254.0.0', 16, 'ipv4'], ['fe80::', 10, 'ipv6']],
  uniquelocal: [['10.0.0.0', 8, 'ipv4'], ['172.16.0.0', 12, 'ipv4'], ['192.168.0.0', 16, 'ipv4'], ['fc00::', 7, 'ipv6']],
};

const notPublic = new net.BlockList();
for (const [address, prefix, family] of NOT_PUBLIC) notPublic.addSubnet(address, prefix, family);

/** The networks of DELIVERY_MX_ALLOW or DELIVERY_MX_DENY (as config.ts checked them: names, addresses, ADDRESS/PREFIX). */
export function networkList(items: string[]): net.BlockList {
  const list = new net.BlockList();
  for (const item of items) {
    if (NAMED[item]) {
      for (const [address, prefix, family] of NAMED[item]) list.addSubnet(address, prefix, family);
      continue;
    }
    const [address, prefix] = item.split('/');
    const family = net.isIPv6(address) ? 'ipv6' : 'ipv4';
    if (prefix === undefined) list.addAddress(address, family);
    else list.addSubnet(address, Number(prefix), family);
  }
  return list;
}

/** An IPv4 address written as IPv6 (::ffff:127.0.0.1) is judged as the IPv4 address it is. */
function plain(address: string): { address: string; family: 'ipv4' | 'ipv6' } {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return { address: mapped[1], family: 'ipv4' };
  if (/^::ffff:/i.test(address)) {
    // ::ffff:7f00:1, the same address in hexadecimal
    const groups = address.slice(7).split(':').map((g) => parseInt(g, 16));
    if (groups.length === 2 && groups.every((g) => g >= 0 && g <= 0xffff)) {
      return { address: [groups[0] >> 8, groups[0] & 255, groups[1] >> 8, groups[1] & 255].join('.'), family: 'ipv4' };
    }
  }
  return { address, family: net.isIPv6(address) ? 'ipv6' : 'ipv4' };
}

let own: { readAt: number; addresses: Set<string> } | null = null;

/** This machine's addresses, read again at most once a minute: asked for every copy sent directly. */
function ownAddresses(): Set<string> {
  if (own && performance.now() - own.readAt < 60_000) return own.addresses;
  const addresses = new Set<string>();
  for (const list of Object.values(os.networkInterfaces())) for (const i of list ?? []) addresses.add(plain(i.address).address);
  own = { readAt: performance.now(), addresses };
  return addresses;
}

/**
 * Why direct delivery must not connect to `address`, or null when it may: the operator's
 * DELIVERY_MX_DENY names it (this machine's public address behind a NAT, which no interface
 * shows), or it is not public unicast, or it is this machine's own (where the ingest listener may
 * be), and the operator's DELIVERY_MX_ALLOW does not name it.
 */
export function refusedAddress(address: string, allow: net.BlockList, deny?: net.BlockList): string | null {
  const a = plain(address);
  if (deny?.check(a.address, a.family)) return 'named in DELIVERY_MX_DENY';
  if (allow.check(a.address, a.family)) return null;
  if (notPublic.check(a.address, a.family)) return 'not a public address';
  if (ownAddresses().has(a.address)) return 'an address of this machine';
  return null;
}
