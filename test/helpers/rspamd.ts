/*
 * A real rspamd (Debian's /usr/bin/rspamd) for the spam-check tests, started from the system's
 * configuration (/etc/rspamd) with a private LOCAL_CONFDIR that overrides what a test needs:
 * loopback ports of its own, a controller password, its DNS lookups to the test suite's stub
 * (so nothing reaches the internet), no proxy or fuzzy workers, no redis, and a tiny
 * public-suffix file (compiling the full one takes rspamd about 8 s; with this it is ready in
 * under a second). One extra rule gives tests a known score: a Subject containing
 * LISTKEEPER-TEST-SPAMMY scores 9. GTUBE, rspamd's built-in test string, scores its reject
 * threshold (15).
 */

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const RSPAMD = '/usr/bin/rspamd';
export const RSPAMD_PASSWORD = 'test-controller-secret';
/** The subject marker of the test rule, and the score it adds. */
export const SPAMMY_SUBJECT = 'LISTKEEPER-TEST-SPAMMY';
export const SPAMMY_SCORE = 9;
/** rspamd's test string, as SpamAssassin's: its reject action (score 15 here) whatever else. */
export const GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X';

export interface RunningRspamd {
  /** the controller, with its password: what SPAM_CHECK_URL would say */
  url: string;
  /** the controller without the password */
  bareUrl: string;
  /** what rspamd printed (warnings and errors), for a failing test's message */
  output(): string;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export async function startRspamd(opts: { readyWithinMs?: number } = {}): Promise<RunningRspamd> {
  if (!fs.existsSync(RSPAMD)) throw new Error(`${RSPAMD} is missing: install Debian's rspamd package (.ci/run does)`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lk-rspamd-'));
  for (const sub of ['local.d', 'override.d', 'db', 'run']) fs.mkdirSync(path.join(dir, sub));
  const [normal, controller] = [await freePort(), await freePort()];
  const dns = (process.env.DNS_SERVERS ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  if (dns.length === 0) throw new Error('DNS_SERVERS is not set: the test suite\'s stub DNS server (global-setup.ts) should be');
  const write = (file: string, text: string) => fs.writeFileSync(path.join(dir, file), text);
  write('tld.dat', 'org\ncom\nnet\nexample\nlocalhost\ntest\n');
  write('local.d/options.inc', [
    `dns { nameserver = [${dns.map((s) => JSON.stringify(s)).join(', ')}]; timeout = 0.5s; retransmits = 1; }`,
    `url_tld = "${path.join(dir, 'tld.dat')}";`,
    // fuzzy_check asks rspamd.com's servers: left out, like every other network service.
    'filters = "chartable,dkim,regexp";',
    '',
  ].join('\n'));
  write('override.d/worker-normal.inc', `bind_socket = "127.0.0.1:${normal}";\ncount = 1;\n`);
  // secure_ip names no loopback address, so the controller asks 127.0.0.1 for its password too.
  write('override.d/worker-controller.inc', `bind_socket = "127.0.0.1:${controller}";\ncount = 1;\npassword = "${RSPAMD_PASSWORD}";\nsecure_ip = "192.0.2.255";\n`);
  write('override.d/worker-proxy.inc', 'count = -1;\n');
  write('override.d/logging.inc', 'type = "console";\nlevel = "warning";\n');
  write('rspamd.local.lua', `
rspamd_config.LISTKEEPER_TEST_SPAMMY = {
  callback = function(task)
    local subject = task:get_header('Subject')
    return subject ~= nil and subject:find('${SPAMMY_SUBJECT.replace(/-/g, '%-')}') ~= nil
  end,
  score = ${SPAMMY_SCORE}.0,
  description = 'listkeeper tests: a subject that asks for a known score',
  group = 'listkeeper',
}
`);

  const root = process.getuid?.() === 0;
  const child: ChildProcess = spawn(RSPAMD, [
    '-f', ...(root ? ['-i', '-u', 'root', '-g', 'root'] : []), '-c', '/etc/rspamd/rspamd.conf',
    `--var=LOCAL_CONFDIR=${dir}`, `--var=DBDIR=${path.join(dir, 'db')}`, `--var=RUNDIR=${path.join(dir, 'run')}`, `--var=LOGDIR=${dir}`,
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const bareUrl = `http://127.0.0.1:${controller}`;
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(killer);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + (opts.readyWithinMs ?? 30_000);
  for (;;) {
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`rspamd exited with ${child.exitCode} before it was ready:\n${output}`);
    }
    const pong = await fetch(`${bareUrl}/ping`).then((r) => r.text(), () => '');
    if (pong.trim() === 'pong') break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`rspamd was not ready within ${opts.readyWithinMs ?? 30_000} ms:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { url: `http://:${RSPAMD_PASSWORD}@127.0.0.1:${controller}`, bareUrl, output: () => output, stop };
}
