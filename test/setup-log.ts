import { useDnsServers } from '../src/dns.ts';
import { log } from '../src/log.ts';

// Test processes never call config(), which is what sets the level: keep logs quiet unless asked.
log.level = process.env.LOG_LEVEL ?? 'silent';

// Lookups go to global-setup.ts's stub DNS server (NXDOMAIN for every name no test has set, but
// the SPF record LOOPBACK_SPF for host names).
useDnsServers((process.env.DNS_SERVERS ?? '').split(',').filter(Boolean));
