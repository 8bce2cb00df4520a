/*
 * The previous release's code, to run beside this one against one database (a rolling upgrade,
 * test/rolling-upgrade.test.ts). "Release" = a commit of this repository: its tree is written out
 * with `git archive` (no worktree, nothing added to the repository's .git), once per machine, in
 * the system's temporary folder. It runs with this checkout's node_modules (a symlink) when both
 * package.json files ask for the same run-time dependencies; otherwise its own are installed
 * (npm ci --omit=dev, slower: the test's time budget then includes the install).
 */

import { execFile, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from './cli.ts';

const run = promisify(execFile);

/**
 * The last release before this one: the stop after issue 14 landed (tagged nowhere; CI's clone
 * may have no tags, so the full hash). Move it forward when a release ships, to that release's commit.
 */
export const PREVIOUS_RELEASE = 'ce76e281532d85aaba65e7ae878bd514d599d140';

export interface Release {
  commit: string;
  root: string;
  bin: string;
  /** the numbered migrations that release has */
  migrations: string[];
}

export async function previousRelease(commit = PREVIOUS_RELEASE): Promise<Release> {
  try {
    await run('git', ['cat-file', '-e', `${commit}^{commit}`], { cwd: ROOT });
  } catch {
    throw new Error(`the previous release's commit ${commit} is not in this clone (a shallow clone?): fetch the whole history (git fetch --unshallow)`);
  }
  // One folder per commit and checkout: its node_modules link points into this checkout.
  const root = path.join(os.tmpdir(), `listkeeper-release-${commit.slice(0, 12)}-${crypto.createHash('sha1').update(ROOT).digest('hex').slice(0, 8)}`);
  if (!fs.existsSync(root)) {
    // Written aside and renamed: a run killed halfway leaves no half tree under the final name.
    const partial = fs.mkdtempSync(`${root}.partial-`);
    await extract(commit, partial);
    fs.renameSync(partial, root);
  }
  await provideModules(root);
  const migrations = fs.readdirSync(path.join(root, 'sql')).filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f)).sort();
  return { commit, root, bin: path.join(root, 'bin/listkeeper.js'), migrations };
}

function extract(commit: string, dir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const git = spawn('git', ['archive', '--format=tar', commit], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const tar = spawn('tar', ['-x', '-C', dir], { stdio: ['pipe', 'ignore', 'pipe'] });
    let errors = '';
    git.stderr.on('data', (d) => (errors += d));
    tar.stderr.on('data', (d) => (errors += d));
    git.stdout.pipe(tar.stdin);
    let pending = 2;
    const done = (code: number | null) => {
      if (code !== 0) return reject(new Error(`git archive ${commit} | tar -x failed: ${errors}`));
      if (--pending === 0) resolve();
    };
    git.once('exit', done);
    tar.once('exit', done);
  });
}

/** What the code needs at run time (devDependencies are this checkout's tools and tests'). */
const deps = (root: string) => {
  const p = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
  return JSON.stringify(Object.entries(p.dependencies ?? {}).sort(([a], [b]) => a.localeCompare(b)));
};

async function provideModules(root: string): Promise<void> {
  const modules = path.join(root, 'node_modules');
  if (deps(root) === deps(ROOT)) {
    if (!fs.existsSync(modules)) fs.symlinkSync(path.join(ROOT, 'node_modules'), modules, 'dir');
    return;
  }
  if (fs.existsSync(path.join(root, '.listkeeper-installed'))) return;
  fs.rmSync(modules, { recursive: true, force: true });
  // Its own dependencies, as its package-lock.json says; scripts off (no embedded server needed).
  await run('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: root, timeout: 300_000 });
  fs.writeFileSync(path.join(root, '.listkeeper-installed'), '');
}
