import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const BIN = path.join(ROOT, 'bin/listkeeper.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the real `listkeeper` binary with the given environment added (undefined removes a variable),
 * in `cwd` (the repository); `bin` another checkout's (test/helpers/previous-release.ts).
 */
export function cli(args: string[], env: Record<string, string | undefined>, input?: string, cwd = ROOT, bin = BIN): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], {
      cwd,
      env: { ...process.env, LOG_LEVEL: 'silent', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.stdin.end(input ?? '');
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

export interface RunningServe {
  child: ChildProcess;
  smtpPort: number;
  webUrl: string;
  /** everything the process wrote so far, stdout and stderr */
  output(): string;
}

/**
 * Starts the real `listkeeper serve --smtp --web` (or the roles given) on ephemeral ports with the
 * given environment added (logging at info, for tests that read the log), once it says it is running.
 */
export function startServe(env: Record<string, string>, roles: string[] = ['--smtp', '--web']): Promise<RunningServe> {
  const child = spawn(process.execPath, [BIN, 'serve', ...roles], {
    cwd: ROOT,
    env: { ...process.env, SMTP_PORT: '0', WEB_PORT: '0', LOG_LEVEL: 'info', MAIL_DOMAIN: 'lists.example.org', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  return new Promise((resolve, reject) => {
    child.stdout.on('data', () => {
      // The addresses it lists, not others in log lines before them (the relay's, for one).
      const running = output.slice(output.indexOf('listkeeper is running'));
      const smtp = /smtp:\/\/127\.0\.0\.1:(\d+)/.exec(running);
      const web = /(http:\/\/127\.0\.0\.1:\d+)\//.exec(running);
      if (smtp && web && output.includes('listkeeper is running')) {
        resolve({ child, smtpPort: Number(smtp[1]), webUrl: web[1], output: () => output });
      }
    });
    child.once('exit', (code) => reject(new Error(`serve exited with ${code}: ${output}`)));
  });
}
