/*
 * The SPF ranges mailauth parses are remembered (src/mail/spf-ranges.ts): its verdicts must not
 * change, for IPv4 and IPv6 ranges, on the first look and on every one after, and a range that
 * does not parse is still a permerror. Real mailauth, with the record served by a stub resolver.
 */

import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { rememberSpfRanges } from '../src/mail/spf-ranges.ts';

const require = createRequire(import.meta.url);
const { spf } = require('mailauth/lib/spf') as { spf: (opts: object) => Promise<{ status: { result: string } }> };
const ipaddr = createRequire(require.resolve('mailauth'))('ipaddr.js') as { parseCIDR: (r: string) => unknown };

const RECORD = 'v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 ip4:198.51.100.7/32 -all';

async function verdict(ip: string, record = RECORD): Promise<string> {
  const resolver = async (_name: string, type: string) => {
    if (type === 'TXT') return [[record]];
    throw Object.assign(new Error('no such record'), { code: 'ENOTFOUND' });
  };
  const r = await spf({ ip, sender: 'someone@sender.example', helo: 'mx.sender.example', mta: 'lists.example.org', resolver });
  return r.status.result;
}

const CASES: [string, string][] = [
  ['192.0.2.10', 'pass'], ['192.0.3.10', 'fail'], ['198.51.100.7', 'pass'], ['198.51.100.8', 'fail'],
  // an IPv4-mapped IPv6 address is judged as its IPv4 address
  ['2001:db8::1', 'pass'], ['2001:db9::1', 'fail'], ['::ffff:192.0.2.10', 'pass'], ['::ffff:192.0.3.10', 'fail'],
];

describe('remembered SPF ranges', () => {
  it('give mailauth the verdicts it gave without them, the first time and every time after', async () => {
    const before = await Promise.all(CASES.map(([ip]) => verdict(ip)));
    rememberSpfRanges();
    expect(ipaddr.parseCIDR.name).not.toBe('parseCIDR'); // the remembering one is in place
    for (let round = 0; round < 3; round++) {
      const after = await Promise.all(CASES.map(([ip]) => verdict(ip)));
      expect(after).toEqual(before);
    }
    expect(before).toEqual(CASES.map(([, want]) => want));
  });

  it('still refuses a range that does not parse, each time', async () => {
    rememberSpfRanges();
    for (let round = 0; round < 2; round++) expect(await verdict('192.0.2.10', 'v=spf1 ip4:192.0.2.0/99 -all')).toBe('permerror');
  });

  it('hands back the same parsed range for the same text', () => {
    rememberSpfRanges();
    expect(ipaddr.parseCIDR('203.0.113.0/24')).toBe(ipaddr.parseCIDR('203.0.113.0/24'));
    expect(() => ipaddr.parseCIDR('not a range')).toThrow();
  });
});
