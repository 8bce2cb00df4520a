/*
 * A real `listkeeper serve --worker` process, logging at info, for tests that kill it, send it
 * SIGTERM or read what it logged.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { BIN, ROOT } from './cli.ts';

export interface WorkerProcess {
  child: ChildProcess;
  output(): string;
  /** resolves with the exit code (or signal) once the process has ended */
  exited: Promise<number | string | null>;
}

export async function spawnWorker(env: Record<string, string>): Promise<WorkerProcess> {
  const child = spawn(process.execPath, [BIN, 'serve', '--worker'], {
    cwd: ROOT,
    env: { ...process.env, MAIL_DOMAIN: 'lists.example.org', LOG_LEVEL: 'info', DELIVERY_POLL_MS: '100', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const exited = new Promise<number | string | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)));
  await new Promise<void>((resolve, reject) => {
    const check = () => {
      if (output.includes('delivery worker started')) resolve();
    };
    child.stdout!.on('data', check);
    void exited.then(() => reject(new Error(`worker exited before starting: ${output}`)));
  });
  return { child, output: () => output, exited };
}

/** Polls `probe` until it returns a value other than undefined/false, or throws after timeoutMs. */
export async function until<T>(probe: () => Promise<T | undefined | false> | T | undefined | false, what: string, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
