/*
 * src/dns.ts keeps answers a minute in each process: every post asks its sender's SPF and DMARC
 * records again, and c-ares keeps nothing. A stub DNS server counts what reaches it.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clearDnsCache, resolvers, useDnsServers } from '../src/dns.ts';
import { StubDns } from './helpers/stub-dns.ts';

let dns: StubDns;

beforeAll(async () => {
  dns = new StubDns();
  useDnsServers([await dns.start()]);
});
afterAll(async () => {
  // Back to the suite's stub for whatever runs next in this worker.
  useDnsServers((process.env.DNS_SERVERS ?? '').split(',').filter(Boolean));
  await dns.stop();
});

const asked = (name: string) => dns.asked.filter((q) => q.startsWith(`${name}/`)).length;

describe('the DNS answer cache', () => {
  it('asks the server once for a name asked again within the minute, whatever the case', async () => {
    dns.set('cached.example', { txt: ['v=spf1 ip4:192.0.2.0/24 -all'] });
    expect(await resolvers().resolve('cached.example', 'TXT')).toEqual([['v=spf1 ip4:192.0.2.0/24 -all']]);
    expect(await resolvers().resolve('Cached.Example', 'TXT')).toEqual([['v=spf1 ip4:192.0.2.0/24 -all']]);
    expect(await resolvers().txt('cached.example')).toEqual([['v=spf1 ip4:192.0.2.0/24 -all']]);
    // resolve(name, 'TXT') and txt(name) are one question with one answer shape
    expect(asked('cached.example')).toBe(1);
  });

  it('keeps "no such name" as an answer too, and asks again once the cache is cleared', async () => {
    for (let i = 0; i < 3; i++) await expect(resolvers().resolve('nowhere.example', 'TXT')).rejects.toMatchObject({ code: 'ENOTFOUND' });
    expect(asked('nowhere.example')).toBe(1);
    dns.set('nowhere.example', { txt: ['now it exists'] });
    await expect(resolvers().resolve('nowhere.example', 'TXT')).rejects.toMatchObject({ code: 'ENOTFOUND' });
    clearDnsCache();
    expect(await resolvers().resolve('nowhere.example', 'TXT')).toEqual([['now it exists']]);
    expect(asked('nowhere.example')).toBe(2);
  });
});
