/*
 * The real `listkeeper serve` as a child process, with the roles asked for, for fault tests:
 * it can be killed with any signal at any moment, and says whether it died on its own.
 * (cli.ts startServe runs `--smtp --web` for the operability tests; this one takes any roles
 * and keeps what the process wrote, for the report when it dies.)
 */

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, ROOT } from './cli.ts';

export type Role = 'smtp' | 'web' | 'worker';

export interface ServeProcess {
  child: ChildProcess;
  pid: number;
  /** the ingest port (when the smtp role runs) */
  smtpPort: number | null;
  /** the web app's base URL (when the web role runs) */
  webUrl: string | null;
  /** the last 256 KB the process wrote, stdout and stderr */
  output(): string;
  /** resolves when the process has exited, with how */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  alive(): boolean;
  /** sends the signal (SIGKILL by default) and waits for the exit */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export interface ServeOptions {
  roles: Role[];
  env: Record<string, string>;
  /** append everything the process writes to this file too */
  logFile?: string;
  readyTimeoutMs?: number;
  /** another checkout's code to run (test/helpers/previous-release.ts); this one by default */
  root?: string;
}

const KEEP = 256 * 1024;

export function spawnServe(opts: ServeOptions): Promise<ServeProcess> {
  const root = opts.root ?? ROOT;
  const child = spawn(process.execPath, [opts.root ? path.join(root, 'bin/listkeeper.js') : BIN, 'serve', ...opts.roles.map((r) => `--${r}`)], {
    cwd: root,
    env: { ...process.env, SMTP_PORT: '0', WEB_PORT: '0', LOG_LEVEL: 'info', MAIL_DOMAIN: 'lists.example.org', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const log = opts.logFile ? fs.createWriteStream(opts.logFile, { flags: 'a' }) : null;
  const keep = (d: Buffer) => {
    output += d.toString('utf8');
    if (output.length > 2 * KEEP) output = output.slice(-KEEP);
    log?.write(d);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  let exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      // The pipes may still hold the last lines: let them drain before closing the log.
      child.once('close', () => log?.end());
      resolve(exit);
    });
  });
  const wanted = new Set(opts.roles);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`serve did not start within ${opts.readyTimeoutMs ?? 60_000} ms: ${output.slice(-4000)}`));
    }, opts.readyTimeoutMs ?? 60_000);
    const check = () => {
      const banner = output.indexOf('listkeeper is running\n');
      if (banner < 0) return;
      // The addresses are the indented lines under the banner (log lines name other URLs).
      const lines = output.slice(banner).split('\n').slice(1).filter((l) => l.startsWith('  '));
      const smtp = lines.map((l) => /^ {2}(?:smtp|lmtp):\/\/[^:]+:(\d+)$/.exec(l)).find(Boolean);
      const web = lines.map((l) => /^ {2}(http:\/\/[^/]+)\//.exec(l)).find(Boolean);
      if ((wanted.has('smtp') && !smtp) || (wanted.has('web') && !web)) return;
      clearTimeout(timer);
      child.stdout!.off('data', check);
      resolve({
        child,
        pid: child.pid!,
        smtpPort: smtp ? Number(smtp[1]) : null,
        webUrl: web ? web[1] : null,
        output: () => output,
        exited,
        alive: () => exit === null,
        async kill(signal: NodeJS.Signals = 'SIGKILL') {
          if (exit === null) child.kill(signal);
          await exited;
        },
      });
    };
    child.stdout!.on('data', check);
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`serve exited (${signal ?? code}) before it was running: ${output.slice(-4000)}`));
    });
  });
}

/** The JSON log lines a process wrote at `warn` or above (pino levels 40+), parsed. */
export function problemLines(output: string): { level: number; msg: string; line: string }[] {
  const out: { level: number; msg: string; line: string }[] = [];
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const entry = JSON.parse(line) as { level?: number; msg?: string };
      if ((entry.level ?? 0) >= 40) out.push({ level: entry.level!, msg: entry.msg ?? '', line });
    } catch {
      // a line cut short by a kill
    }
  }
  return out;
}
