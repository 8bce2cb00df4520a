import type { Command } from 'commander';
import type { Database } from '../db/database.ts';
import type { log as logger } from '../log.ts';
import { fail, loadConfig } from './context.ts';

/** A long-lived part of the process: started once, stopped idempotently, in order. */
interface Part {
  name: string;
  stop(): Promise<void>;
}

export function registerServe(program: Command) {
  program
    .command('serve')
    .option('--smtp', 'run the SMTP/LMTP ingest listener')
    .option('--web', 'run the web archive and admin panel')
    .option('--worker', 'run the delivery worker')
    .description('run the listkeeper roles (all three when none is named)')
    .action(async (o) => {
      try {
        await serve({ smtp: !!o.smtp, web: !!o.web, worker: !!o.worker });
      } catch (err) {
        fail(err);
        process.exit(1);
      }
    });
}

export async function serve(asked: { smtp: boolean; web: boolean; worker: boolean }) {
  const { isWebProcess, joinPrimary, WebProcesses } = await import('../web/processes.ts');
  // A web process forked by a `serve` primary (WEB_PROCESSES > 1) runs the web role only.
  const webProcess = isWebProcess();
  const roles = webProcess ? { smtp: false, web: true, worker: false } : asked;
  const all = !roles.smtp && !roles.web && !roles.worker;
  const loaded = await loadConfig();
  const webOnly = roles.web && !roles.smtp && !roles.worker;
  const cfg = webOnly ? { ...loaded, dbPoolSize: loaded.webDbPoolSize } : loaded;
  // Loaded here, not at start: other commands never pay for what only serve uses.
  const { log, redactUrl } = await import('../log.ts');
  const { offersOneClick } = await import('../mail/list-headers.ts');
  const { openDatabase } = await import('../db/database.ts');
  const { LOCK_TIMEOUT_MS } = await import('../db/pool.ts');
  (await import('../dns.ts')).useDnsServers(cfg.dnsServers);
  guardProcess(log);
  if (!webProcess && !offersOneClick(cfg.publicUrl)) {
    log.warn({ publicUrl: cfg.publicUrl }, 'PUBLIC_URL is not https: the List-Unsubscribe-Post header of copies goes with an http link, which mailbox providers do not act on, because RFC 8058 one-click unsubscribe needs an https link (Gmail and Yahoo require one-click from bulk senders); set PUBLIC_URL=https://…');
  }
  // A signal while the roles start is held until they all have, then stops them: its default
  // action would kill a delivery worker that already has copies in flight (its rows would wait
  // for the lease to run out instead of going back at once).
  // Until the database is open nothing has started, and opening may wait long for another
  // process's migration: a signal then ends the wait, and the process.
  let held: string | null = null;
  const opening = new AbortController();
  const hold = (signal: NodeJS.Signals) => {
    if (webProcess && signal === 'SIGINT') return;
    held ??= signal;
    opening.abort(signal);
  };
  process.on('SIGTERM', hold);
  process.on('SIGINT', hold);
  const db: Database = await openDatabase(cfg, 'serve', { signal: opening.signal, lockTimeoutMs: LOCK_TIMEOUT_MS }).catch((err) => {
    if (!held) throw err;
    log.info({ signal: held, reason: (err as Error).message }, 'stopped before the roles started');
    process.exit(0);
  });
  // Shutdown order: intake first (SMTP then web), then delivery drains, then the pool closes.
  const intake: Part[] = [];
  const background: Part[] = [];
  const urls: string[] = [];
  let allMetrics: (() => Promise<string>) | undefined;
  // What SIGHUP reloads: the ingest listener's certificate (SMTP_TLS_CERT, SMTP_TLS_KEY).
  const reloads: (() => void)[] = [];
  try {
    if (all || roles.smtp) {
      // Roles load lazily so that other commands start fast and never pull in express or smtp-server.
      const { IngestServer } = await import('../smtp/server.ts');
      const smtp = new IngestServer(db.pool, { ...cfg.smtp, databaseUrl: db.directUrl ?? db.url, settings: cfg });
      const addr = await smtp.start();
      intake.push({ name: 'smtp', stop: () => smtp.stop() });
      if (cfg.smtp.tls) reloads.push(() => smtp.reloadTls());
      urls.push(`${cfg.smtp.lmtp ? 'lmtp' : 'smtp'}://${addr.address}:${addr.port}`);
    }
    if (all || roles.web) {
      const several = cfg.web.processes > 1 && !webProcess;
      // Several processes connect straight to the database this one opened (the embedded one too).
      const web = several ? new WebProcesses(cfg.web.processes, { DATABASE_URL: db.url }) : new (await import('../web/server.ts')).WebServer(db, cfg);
      const addr = await web.start();
      intake.push({ name: 'web', stop: () => web.stop() });
      urls.push(`http://${addr.address}:${addr.port}/ (public URL ${cfg.publicUrl}${several ? `; ${cfg.web.processes} web processes` : ''})`);
      if (web instanceof WebProcesses) allMetrics = () => web.allMetrics();
    }
    if (all || roles.worker) {
      const { startDeliveryWorker } = await import('../delivery/start.ts');
      background.push(await startDeliveryWorker(db, cfg));
      urls.push('delivery worker running');
      const { startPurger } = await import('../cache/purger.ts');
      background.push(await startPurger(db.pool, db.directUrl ?? db.url, cfg));
      if (cfg.purge.url) urls.push(`purges to ${redactUrl(cfg.purge.url)}`);
    }
    // METRICS_PORT: one listener per serve (the primary's speaks for its web processes).
    if (cfg.metrics && !webProcess) {
      const { startMetricsServer } = await import('../metrics-server.ts');
      const metrics = await startMetricsServer(db.pool, cfg.metrics.host, cfg.metrics.port, allMetrics);
      background.push({ name: 'metrics', stop: () => metrics.stop() });
      urls.push(`metrics http://${metrics.address.address}:${metrics.address.port}/metrics`);
    }
  } catch (err) {
    for (const part of [...intake, ...background]) await part.stop().catch(() => undefined);
    await db.close();
    throw err;
  }
  // The primary speaks for its web processes.
  if (!webProcess) process.stdout.write(`listkeeper is running\n${urls.map((u) => `  ${u}`).join('\n')}\n`);

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) {
      if (webProcess) return;
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    log.info({ signal }, 'shutting down');
    for (const part of [...intake, ...background]) {
      await part.stop().catch((err) => log.error({ err, part: part.name }, 'stop failed'));
    }
    await db.close().catch((err) => log.error({ err }, 'closing the database failed'));
    log.info('stopped');
    process.exit(0);
  };
  if (webProcess) {
    // The primary stops its web processes (SIGTERM, or the IPC channel closing when it dies); a
    // Ctrl-C reaches the whole process group, and the primary's own SIGTERM follows it.
    process.on('SIGINT', () => undefined);
    process.on('SIGHUP', () => undefined);
    process.on('SIGTERM', () => void shutdown('SIGTERM'));
    joinPrimary(() => void shutdown('primary gone'));
  } else {
    process.on('SIGINT', () => void shutdown('SIGINT'));
    process.on('SIGTERM', () => void shutdown('SIGTERM'));
    // SIGHUP reloads, as for Postfix and nginx (systemd: ExecReload=kill -HUP $MAINPID); it never
    // stops the server, even with nothing to reload.
    process.on('SIGHUP', () => {
      if (stopping) return;
      if (reloads.length === 0) log.info({ signal: 'SIGHUP' }, 'nothing to reload (no SMTP_TLS_CERT in this process)');
      for (const reload of reloads) reload();
    });
  }
  process.off('SIGTERM', hold);
  process.off('SIGINT', hold);
  if (held) void shutdown(held);
}

/**
 * Last lines of defence for a long-running server. A promise rejected with nobody to hear it is a
 * bug on one request's path, not damage to the process: it is logged as such and serving goes on,
 * rather than dropping every session for it (acknowledged mail is committed either way). An
 * uncaught exception may have left any state half-changed, so that one still ends the process,
 * with a log line saying why, for the supervisor to restart it.
 */
function guardProcess(log: typeof logger) {
  process.on('unhandledRejection', (reason) => {
    log.error({ err: reason }, 'unhandled promise rejection (a bug): logged, and the server keeps running');
  });
  process.on('uncaughtException', (err, origin) => {
    log.fatal({ err, origin }, 'uncaught exception: exiting');
    process.exit(1);
  });
}
