/*
 * A private Postfix instance built from the recipe in docs/operations.md, as written: the fenced
 * blocks are read out of the markdown and only the placeholders the docs name are replaced
 * (ports, the configuration directory, the sizes). It has its own configuration, queue and data
 * directories under a temporary folder and listens on loopback ports only; the system's instance
 * and /etc/postfix are never touched (every command gets `-c DIR`). Postfix's master needs root.
 */

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from './cli.ts';
import { alive, childPids } from './proc.ts';

const SBIN = '/usr/sbin';

export const RECIPE_DOC = path.join(ROOT, 'docs/operations.md');

/** The recipe's placeholders (the table above its blocks). */
export const PLACEHOLDERS = { configDir: '/etc/postfix', lmtpPort: '2525', relayPort: '2526', maxSize: 26214400, copySize: 27262976 };

export interface Recipe {
  env: string;
  mainCf: string;
  masterCf: string;
  transport: string;
}

/** The fenced blocks of the Postfix section, found by their first line (the file they go into). */
export function readRecipe(markdown = fs.readFileSync(RECIPE_DOC, 'utf8')): Recipe {
  const start = markdown.indexOf('## Behind Postfix (LMTP)');
  const end = markdown.indexOf('\n## ', start + 1);
  const section = markdown.slice(start, end < 0 ? undefined : end);
  const blocks = [...section.matchAll(/^```[a-z]*\n([\s\S]*?)^```$/gm)].map((m) => m[1]);
  const find = (first: RegExp) => {
    const found = blocks.filter((b) => first.test(b.split('\n')[0]));
    if (found.length !== 1) throw new Error(`docs/operations.md: expected one block starting with ${first}, found ${found.length}`);
    return found[0];
  };
  return {
    env: find(/^# environment of `listkeeper serve`/),
    mainCf: find(/^# \/etc\/postfix\/main\.cf/),
    masterCf: find(/^# \/etc\/postfix\/master\.cf/),
    transport: find(/^# \/etc\/postfix\/transport/),
  };
}

export interface Substitutions {
  configDir: string;
  lmtpPort: number;
  relayPort: number;
  maxSize: number;
}

/** Replaces the placeholders, and nothing else; the copy limit keeps the docs' margin over maxSize. */
export function substitute(text: string, s: Substitutions): string {
  const margin = PLACEHOLDERS.copySize - PLACEHOLDERS.maxSize;
  return text
    .replaceAll(PLACEHOLDERS.configDir, s.configDir)
    .replaceAll(`127.0.0.1:${PLACEHOLDERS.lmtpPort}`, `127.0.0.1:${s.lmtpPort}`)
    .replaceAll(`SMTP_PORT=${PLACEHOLDERS.lmtpPort}`, `SMTP_PORT=${s.lmtpPort}`)
    .replaceAll(`127.0.0.1:${PLACEHOLDERS.relayPort}`, `127.0.0.1:${s.relayPort}`)
    .replaceAll(String(PLACEHOLDERS.copySize), String(s.maxSize + margin))
    .replaceAll(String(PLACEHOLDERS.maxSize), String(s.maxSize));
}

/** `NAME=value` lines of the environment block. */
export function envLines(block: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of block.split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m) env[m[1]] = m[2];
  }
  return env;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export function run(cmd: string, args: string[], timeoutMs = 20_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 8 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

export interface PostfixOptions {
  doorPort: number;
  /** where Postfix relays everything not for the list domain: the stand-in for the internet */
  relayhostPort: number;
  subs: Omit<Substitutions, 'configDir'>;
  recipe?: Recipe;
}

export interface PrivatePostfix {
  dir: string;
  configDir: string;
  mainCf: string;
  masterCf: string;
  /** what `postfix check` and `postfix start` said */
  startOutput: string;
  log(): string;
  /** `postconf -c DIR -h NAME`: the value Postfix reads */
  param(name: string): Promise<string>;
  queue(): Promise<string>;
  stop(): Promise<void>;
}

/** The settings that make the instance private; everything else comes from the recipe. */
function baseMainCf(dir: string, relayhostPort: number): string {
  return [
    '# the test instance: its own folders, loopback only, the capture server as "the internet"',
    'compatibility_level = 3.6',
    `queue_directory = ${dir}/queue`,
    `data_directory = ${dir}/data`,
    'mail_owner = postfix',
    'setgid_group = postdrop',
    'inet_interfaces = 127.0.0.1',
    'inet_protocols = ipv4',
    'myhostname = mx.example.org',
    'mydestination =',
    'alias_maps =',
    'alias_database =',
    `relayhost = [127.0.0.1]:${relayhostPort}`,
    `maillog_file = ${dir}/maillog`,
    `maillog_file_prefixes = ${dir}`,
    '',
  ].join('\n');
}

/** Debian's master.cf as shipped, the port 25 door moved to a loopback port, no chroot (the test has no jail). */
function baseMasterCf(doorPort: number): string {
  return fs.readFileSync('/usr/share/postfix/master.cf.dist', 'utf8').split('\n').map((line) => {
    if (/^[#\s]/.test(line) || line === '') return line;
    const f = line.split(/\s+/);
    if (f[0] === 'smtp' && f[1] === 'inet') f[0] = `127.0.0.1:${doorPort}`;
    if (f.length >= 8 && f[4] === 'y') f[4] = 'n';
    return f.join(' ');
  }).join('\n');
}

export async function startPostfix(opts: PostfixOptions): Promise<PrivatePostfix> {
  const recipe = opts.recipe ?? readRecipe();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lk-postfix-'));
  // Postfix's daemons run as `postfix` and must reach their folders.
  fs.chmodSync(dir, 0o755);
  const configDir = path.join(dir, 'conf');
  fs.mkdirSync(configDir);
  fs.mkdirSync(path.join(dir, 'queue'));
  fs.mkdirSync(path.join(dir, 'data'));
  const { uid, gid } = postfixIds();
  fs.chownSync(path.join(dir, 'data'), uid, gid);
  const subs = { ...opts.subs, configDir };
  const mainCf = baseMainCf(dir, opts.relayhostPort) + substitute(recipe.mainCf, subs);
  const masterCf = `${baseMasterCf(opts.doorPort)}\n${substitute(recipe.masterCf, subs)}`;
  fs.writeFileSync(path.join(configDir, 'main.cf'), mainCf);
  fs.writeFileSync(path.join(configDir, 'master.cf'), masterCf);
  fs.writeFileSync(path.join(configDir, 'transport'), substitute(recipe.transport, subs));
  const pf = {
    dir,
    configDir,
    mainCf,
    masterCf,
    startOutput: '',
    log: () => (fs.existsSync(path.join(dir, 'maillog')) ? fs.readFileSync(path.join(dir, 'maillog'), 'utf8') : ''),
    async param(name: string) {
      const r = await run(`${SBIN}/postconf`, ['-c', configDir, '-h', name]);
      return r.stdout.trim();
    },
    async queue() {
      return (await run(`${SBIN}/postqueue`, ['-c', configDir, '-p'])).stdout;
    },
    stop: () => stopPostfix(dir, configDir),
  };
  const steps = [
    ['postmap', ['-c', configDir, path.join(configDir, 'transport')]],
    ['postfix', ['-c', configDir, 'check']],
    ['postfix', ['-c', configDir, 'start']],
  ] as const;
  for (const [cmd, args] of steps) {
    const r = await run(`${SBIN}/${cmd}`, [...args]);
    pf.startOutput += r.stdout + r.stderr;
    if (r.code !== 0) {
      await pf.stop();
      throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.stdout}${r.stderr}\n${pf.log()}`);
    }
  }
  await waitForPort(opts.doorPort, 15_000);
  await waitForPort(opts.subs.relayPort, 15_000);
  return pf;
}

function postfixIds(): { uid: number; gid: number } {
  const passwd = fs.readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('postfix:'));
  if (!passwd) throw new Error('no postfix user (apt-get install postfix)');
  const f = passwd.split(':');
  return { uid: Number(f[2]), gid: Number(f[3]) };
}

async function waitForPort(port: number, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The master's pid and its children's, read from /proc. */
function instancePids(dir: string): number[] {
  const pidFile = path.join(dir, 'queue/pid/master.pid');
  if (!fs.existsSync(pidFile)) return [];
  const master = Number(fs.readFileSync(pidFile, 'utf8').trim());
  if (!master) return [];
  return [master, ...childPids(master)];
}


/** `postfix -c DIR stop`, then SIGKILL for whatever of this instance is left; the folder goes. */
async function stopPostfix(dir: string, configDir: string) {
  const pids = instancePids(dir);
  if (pids.length > 0) {
    await run(`${SBIN}/postfix`, ['-c', configDir, 'stop'], 15_000);
    const deadline = Date.now() + 5_000;
    while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    for (const pid of pids.filter(alive)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  fs.rmSync(dir, { recursive: true, force: true });
}
