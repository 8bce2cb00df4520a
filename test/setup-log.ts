/*
 * Runs before each test file. Test files share worker processes (vitest.config.ts: isolate off,
 * which saves each file loading node_modules again, about a fifth of the suite's time), so what a
 * file leaves in process-wide state is put back here: the environment as the worker started with
 * it, the configuration parsed from it, the DNS resolvers and their cache, the log level.
 */
import { forgetConfig } from '../src/config.ts';
import { setResolvers, useDnsServers } from '../src/dns.ts';
import { log } from '../src/log.ts';

const state = globalThis as { listkeeperTestEnv?: Record<string, string | undefined> };
state.listkeeperTestEnv ??= { ...process.env };
const start = state.listkeeperTestEnv;
for (const key of Object.keys(process.env)) if (!(key in start)) delete process.env[key];
Object.assign(process.env, start);
forgetConfig();

// Test processes never call config(), which is what sets the level: keep logs quiet unless asked.
log.level = process.env.LOG_LEVEL ?? 'silent';

// Lookups go to global-setup.ts's stub DNS server (NXDOMAIN for every name no test has set, but
// the SPF record LOOPBACK_SPF for host names); useDnsServers also forgets the kept answers.
setResolvers();
useDnsServers((process.env.DNS_SERVERS ?? '').split(',').filter(Boolean));
