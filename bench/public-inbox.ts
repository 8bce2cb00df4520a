/*
 * The public-inbox side of bench/search-compare.ts: a v2 inbox (public-inbox 1.9, Debian package
 * `public-inbox`) with Xapian at indexlevel full, filled from an mbox, and public-inbox-httpd
 * serving it on a loopback port. Everything lives in one temporary folder, HOME and PI_CONFIG
 * included, so the user's own ~/.public-inbox is never read or written.
 *
 * The import is public-inbox's own mbox importer (PublicInbox::InboxWritable::import_mbox, what
 * its scripts/import_vger_from_mbox runs), in one process: it writes the git epoch, the overview
 * database and the Xapian shard as it goes. Measured on 10,000 messages it took about 55 s on a
 * loaded machine, against 90 s for `git fast-import` of the same messages followed by a separate
 * `public-inbox-index` (which reads everything back from git); public-inbox-mda per message
 * starts Perl for each one.
 */

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { freePort, stopProcess, waitFor } from './http-load.ts';

export const INBOX = 'bench';

export function publicInboxInstalled(): boolean {
  return spawnSync('public-inbox-httpd', ['--help'], { stdio: 'ignore' }).error === undefined
    && spawnSync('perl', ['-MPublicInbox::InboxWritable', '-e', '1'], { stdio: 'ignore' }).status === 0;
}

export class PublicInbox {
  private httpd: ChildProcess | undefined;
  readonly inboxDir: string;

  /** `dir`: an empty temporary folder this inbox owns (the caller removes it). */
  constructor(readonly dir: string) {
    this.inboxDir = path.join(dir, 'inbox');
  }

  private get env(): NodeJS.ProcessEnv {
    return { ...process.env, HOME: this.dir, PI_CONFIG: path.join(this.dir, 'config') };
  }

  /** public-inbox-init -V2, then the mbox (mboxrd) imported and indexed; returns the seconds taken by the import. */
  async importMbox(mbox: string): Promise<number> {
    await this.run('public-inbox-init', ['-V2', '-L', 'full', INBOX, this.inboxDir, `http://127.0.0.1/${INBOX}`, 'dev@lists.example.org']);
    const t0 = performance.now();
    const script = `my $ibx = PublicInbox::Config->new->lookup_name('${INBOX}') or die "no inbox\\n";
      PublicInbox::InboxWritable->new($ibx)->import_mbox(\\*STDIN, 'mboxrd');`;
    await this.run('perl', ['-MPublicInbox::Config', '-MPublicInbox::InboxWritable', '-e', script], mbox);
    return (performance.now() - t0) / 1000;
  }

  /** public-inbox-httpd with `workers` worker processes on a free loopback port; its base URL. */
  async start(workers: number): Promise<string> {
    const port = await freePort();
    const log = fs.openSync(path.join(this.dir, 'httpd.log'), 'a');
    try {
      this.httpd = spawn('public-inbox-httpd', ['-W', String(workers), '-l', `127.0.0.1:${port}`], { env: this.env, cwd: this.dir, stdio: ['ignore', log, log] });
    } finally {
      fs.closeSync(log);
    }
    const base = `http://127.0.0.1:${port}`;
    try {
      await waitFor(`${base}/${INBOX}/`, 120);
    } catch (err) {
      throw new Error(`${(err as Error).message}; public-inbox-httpd said: ${fs.readFileSync(path.join(this.dir, 'httpd.log'), 'utf8').slice(-500)}`, { cause: err });
    }
    return base;
  }

  async stop(): Promise<void> {
    if (this.httpd) await stopProcess(this.httpd);
  }

  /** Runs a public-inbox command in this inbox's environment, `stdin` from a file; fails with its output. */
  private run(cmd: string, args: string[], stdin?: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const input = stdin ? fs.openSync(stdin, 'r') : 'ignore';
      const child = spawn(cmd, args, { env: this.env, cwd: this.dir, stdio: [input, 'pipe', 'pipe'] });
      if (typeof input === 'number') fs.closeSync(input);
      let out = '';
      child.stdout?.on('data', (d) => (out += d));
      child.stderr?.on('data', (d) => (out += d));
      child.on('error', reject);
      child.on('exit', (code, signal) => (code === 0 ? resolve() : reject(new Error(`${cmd} failed (${signal ?? code}): ${out.slice(-1000)}`))));
    });
  }
}

/** The search URL of the inbox: public-inbox's default page (200 results by date, no excerpts). */
export function searchUrl(q: string): string {
  return `/${INBOX}/?q=${encodeURIComponent(q)}`;
}

/**
 * Matches a public-inbox search page reports: "Results 1-200 of ~1630" (Xapian's estimate when
 * marked ~), nothing of the kind when there are none.
 */
export function searchHitsOf(html: string): { hits: number; estimated: boolean } {
  const m = /Results \d+-\d+ of (~?)(\d+)/.exec(html);
  return m ? { hits: Number(m[2]), estimated: m[1] === '~' } : { hits: 0, estimated: false };
}
