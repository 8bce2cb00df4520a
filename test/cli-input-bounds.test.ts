/*
 * Files the CLI reads whole (src/read-file.ts), given by mistake: /dev/zero, a directory, a file
 * past the limit of its use. Each run is the real `listkeeper`, with a preloaded module that
 * reports the process's peak RSS as it exits, and is killed if it runs past a deadline: the
 * refusal must come quickly, in one line naming the file (and the limit), with memory bounded
 * and nothing written.
 */

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, cli, ROOT } from './helpers/cli.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let env: Record<string, string>;
let dir: string;
const BEES = path.join(ROOT, 'test/fixtures/mailman/mm2/bees.config');

beforeAll(async () => {
  db = await testDatabase();
  env = { DATABASE_URL: db.url, MAIL_DOMAIN: 'lists.example.org' };
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lk-bounds-'));
});
afterAll(async () => {
  fs.rmSync(dir, { recursive: true, force: true });
  await db?.drop();
});

// VmHWM, the peak of this process's own memory: resourceUsage().maxRSS also counts the image the
// child was forked from before its exec, which is the test runner's (near 280 MB late in the suite).
const PEAK = `import fs from 'node:fs'; process.on('exit', () => process.stderr.write('PEAK_RSS_KB ' + /VmHWM:\\s+(\\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1] + '\\n'));`;
// The CLI alone peaks near 95 MB; reading /dev/zero as far as the old 256 MB limit took 600 MB.
const PEAK_MB_MAX = 160;
const DEADLINE_MS = 20_000;

interface Measured { code: number | null; stderr: string; peakMb: number; killed: boolean }

/** Runs the real CLI in `cwd`, killed past DEADLINE_MS; its stderr without the peak RSS line. */
function measured(args: string[], extraEnv: Record<string, string> = {}, cwd = ROOT): Promise<Measured> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd,
      env: { ...process.env, LOG_LEVEL: 'silent', ...env, ...extraEnv, NODE_OPTIONS: `--import=data:text/javascript,${encodeURIComponent(PEAK)}` },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    let killed = false;
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, DEADLINE_MS);
    child.on('close', (code) => {
      clearTimeout(timer);
      const peak = /PEAK_RSS_KB (\d+)\n/.exec(stderr);
      resolve({ code, stderr: stderr.replace(/PEAK_RSS_KB \d+\n/, ''), peakMb: peak ? Number(peak[1]) / 1024 : Infinity, killed });
    });
  });
}

/** A sparse file of `bytes` bytes (no disk used). */
function sparse(name: string, bytes: number): string {
  const file = path.join(dir, name);
  fs.closeSync(fs.openSync(file, 'w'));
  fs.truncateSync(file, bytes);
  return file;
}

function expectRefused(r: Measured, line: string) {
  expect(r.killed).toBe(false);
  expect([r.code, r.stderr]).toEqual([1, `listkeeper: ${line}\n`]);
  expect(r.peakMb).toBeLessThan(PEAK_MB_MAX);
}

const listCount = async () => (await db.pool.query(`select count(*)::int as n from lists`)).rows[0].n;

describe('files the CLI reads whole', { timeout: 120_000 }, () => {
  it('import-mailman refuses /dev/zero, a directory and a 2 GB file at once, in little memory, creating no list', async () => {
    const before = await listCount();
    const huge = sparse('huge-regular.txt', 2 * 1024 ** 3);
    expectRefused(await measured(['import-mailman', BEES, '/dev/zero']), '/dev/zero is a device, not a regular file: a Mailman export file must be a regular file');
    expectRefused(await measured(['import-mailman', BEES, dir]), `${dir} is a directory, not a regular file: a Mailman export file must be a regular file`);
    expectRefused(await measured(['import-mailman', BEES, huge]),
      `${huge} holds more than 64 MB, the most listkeeper reads for a Mailman export file: give a Mailman 3 roster in pages (?count=…&page=…), Mailman 2 members in several files`);
    // Under the old limit of 256 MB, a 100 MB file was read whole, then decoded: memory grew with it.
    const big = sparse('big-regular.txt', 100 * 1024 * 1024);
    expectRefused(await measured(['import-mailman', BEES, big]),
      `${big} holds more than 64 MB, the most listkeeper reads for a Mailman export file: give a Mailman 3 roster in pages (?count=…&page=…), Mailman 2 members in several files`);
    expect(await listCount()).toBe(before);
  });

  it('list set KEY=@FILE refuses /dev/zero, a directory, and a DKIM key file past 64 KB, changing nothing', async () => {
    expect((await cli(['list', 'create', 'bounded', '--owner', 'o@example.org'], env)).code).toBe(0);
    const settings = async () => (await db.pool.query(`select footer, dkim_private_key from lists where address = 'bounded@lists.example.org'`)).rows[0];
    const before = await settings();
    expectRefused(await measured(['list', 'set', 'bounded', 'footer=@/dev/zero']), "/dev/zero is a device, not a regular file: a setting's file must be a regular file or a pipe");
    expectRefused(await measured(['list', 'set', 'bounded', `footer=@${dir}`]), `${dir} is a directory, not a regular file: a setting's file must be a regular file or a pipe`);
    // A key is a few KB: the 1 MB of a template would let a wrong file (a log, a dump) be parsed as one.
    const key = path.join(dir, 'key.pem');
    fs.writeFileSync(key, `-----BEGIN PRIVATE KEY-----\n${'A'.repeat(70 * 1024)}\n-----END PRIVATE KEY-----\n`);
    expectRefused(await measured(['list', 'set', 'bounded', 'footer=short', `dkim_private_key=@${key}`]), `${key} holds more than 64 KB, the most listkeeper reads for a DKIM private key`);
    expect(await settings()).toEqual(before);
  });

  it('every command refuses a CA file or a .env that is /dev/zero, in one line, rather than read it without end', async () => {
    expectRefused(await measured(['list', 'ls'], { RELAY_TLS_CA: '/dev/zero' }),
      'Invalid configuration: RELAY_TLS_CA="/dev/zero" must be a readable PEM file of CA certificates: it is a device, not a regular file: a PEM file must be a regular file');
    const cwd = fs.mkdtempSync(path.join(dir, 'cwd-'));
    fs.symlinkSync('/dev/zero', path.join(cwd, '.env'));
    expectRefused(await measured(['list', 'ls'], {}, cwd),
      `Invalid configuration: ${path.join(cwd, '.env')} cannot be read (it is a device, not a regular file: a .env file must be a regular file)`);
  });

  it('restore refuses a directory in one line, and /dev/zero by its first bytes, leaving the database as it was', async () => {
    const target = await testDatabase();
    try {
      const restore = (file: string) => measured(['restore', file], { DATABASE_URL: target.url });
      expectRefused(await restore(dir), `restore refused, the database is left as it was: ${dir} is a directory, not a backup file: give the file listkeeper backup wrote (or - for stdin)`);
      expectRefused(await restore('/dev/zero'), 'restore refused, the database is left as it was: not a listkeeper backup file (it does not begin as one)');
    } finally {
      await target.drop();
    }
  });
});
