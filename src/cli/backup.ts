/* `listkeeper backup FILE` and `listkeeper restore FILE` (docs/command-line.md, docs/operations.md). */

import type cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { InvalidInput } from '../errors.ts';
import { runCommand } from './context.ts';

// Each action imports the modules it uses (await import), so a command loads only its own.

export function registerBackupCommands(program: Command) {
  program
    .command('backup')
    .argument('<file>', 'where to write it (FILE.gz is gzipped; - for stdout)')
    .option('--method <method>', 'auto|listkeeper|pg_dump: auto uses a pg_dump of the server\'s major when the PATH has one', 'auto')
    .description('write a consistent backup of the whole database, while serve runs')
    .action((file: string, o: { method: string }) =>
      runCommand(async ({ db }) => {
        const { backupToFile, BACKUP_METHODS } = await import('../db/backup.ts');
        const method = BACKUP_METHODS.find((m) => m === o.method);
        if (!method) throw new InvalidInput(`--method must be one of ${BACKUP_METHODS.join(', ')} (got "${o.method}")`);
        // A reader that stops early gets a part of a backup: not the quiet exit 0 of `members | head`
        // (runCommand's), which told `listkeeper backup - | ssh …` that a backup had been made.
        if (file === '-') {
          process.stdout.prependListener('error', (err: NodeJS.ErrnoException) => {
            if (err.code !== 'EPIPE') return;
            process.stderr.write('listkeeper: backup: stdout was closed before the backup was written to the end: what was read of it is not a backup\n');
            process.exit(1);
          });
        }
        const progress = progressReporter('backup', (await import('cli-progress')).default);
        let result;
        try {
          result = await backupToFile(db.sessionPool ?? db.pool, file, {
            method,
            // The server the session pool reaches (not a transaction pooler): pg_dump imports the snapshot there.
            url: db.directUrl ?? db.url,
            onProgress: (p) => progress.update(p.table ?? 'done', p.rowsDone, p.rowsTotal, p.bytes, p.table === null),
          });
        } finally {
          progress.stop();
        }
        const rows = result.tables.reduce((n, t) => n + t.rows, 0);
        const messages = result.tables.find((t) => t.table === 'messages')?.rows ?? 0;
        // With FILE `-` stdout carries the backup: the summary goes to stderr.
        (file === '-' ? process.stderr : process.stdout).write(
          `backed up ${result.tables.length} tables, ${rows} rows (${messages} messages) to ${file === '-' ? 'stdout' : file}: ` +
            `${mb(result.bytes)} MB in ${result.seconds.toFixed(1)} s, schema ${result.header.migrations.at(-1)}; ` +
            `method: ${result.tool ? `pg_dump ${result.tool.version}` : 'listkeeper'}\n`,
        );
      }),
    );

  program
    .command('restore')
    .argument('<file>', 'a file written by listkeeper backup, with either method (- for stdin)')
    .description('restore a backup into an empty database, then check it')
    .action((file: string) =>
      // Opened without migrating: the database must still be empty when the restore looks at it.
      runCommand(
        async ({ db }) => {
          const { restoreFromFile } = await import('../db/restore.ts');
          const { migrate } = await import('../db/migrate.ts');
          const progress = progressReporter('restore', (await import('cli-progress')).default);
          let result;
          try {
            result = await restoreFromFile(db.sessionPool ?? db.pool, file, {
              url: db.directUrl ?? db.url,
              onProgress: (p) => progress.update(p.table ? `${p.phase} ${p.table}` : p.phase, p.rowsDone, p.rowsTotal, p.bytes, p.table === null),
            });
          } catch (err) {
            // Only when even emptying it again failed does the message say otherwise itself.
            if ((err as { code?: string }).code !== 'restore_left_partial') (err as Error).message = `restore refused, the database is left as it was: ${(err as Error).message}`;
            else (err as Error).message = `restore failed: ${(err as Error).message}`;
            throw err;
          } finally {
            progress.stop();
          }
          const rows = result.tables.reduce((n, t) => n + t.rows, 0);
          const messages = result.tables.find((t) => t.table === 'messages')?.rows ?? 0;
          process.stdout.write(
            `restored ${file} (made ${result.header.created_at}, schema ${result.header.migrations.at(-1)}): ${result.tables.length} tables, ` +
              `${rows} rows (${messages} messages) in ${result.seconds.toFixed(1)} s; checked: every table reads back with the backup's row count and sha256\n`,
          );
          if (result.recreated?.length) {
            process.stdout.write(
              `made from the backup, not by listkeeper's migrations (added to the database by hand): ${result.recreated.join(', ')}; ` +
                'their rows are restored, their defaults, indexes and constraints other than the primary key are not\n',
            );
          }
          const applied = await migrate(db.sessionPool ?? db.pool);
          if (applied.length > 0) process.stdout.write(`then applied the newer migrations: ${applied.join(', ')}\n`);
        },
        { migrate: false },
      ),
    );
}

const mb = (n: number) => (n / 1048576).toFixed(1);

/** A bar on a terminal, a plain line every few seconds otherwise; both on stderr. */
function progressReporter(what: string, progressBars: typeof cliProgress) {
  const started = performance.now();
  const tty = process.stderr.isTTY === true;
  const bar = tty
    ? new progressBars.SingleBar(
        { stream: process.stderr, format: `${what} [{bar}] {percentage}% | {value}/{total} rows | {mb} MB | {step}`, hideCursor: true, clearOnComplete: false },
        progressBars.Presets.shades_classic,
      )
    : null;
  let barStarted = false;
  let lastLine = -Infinity;
  return {
    /** `milestone`: a step with no table (all copied, indexing, all checked), always shown. */
    update(step: string, rowsDone: number, rowsTotal: number, bytes: number, milestone: boolean) {
      if (bar) {
        if (!barStarted) bar.start(rowsTotal, 0, { mb: mb(bytes), step });
        barStarted = true;
        bar.update(rowsDone, { mb: mb(bytes), step });
        return;
      }
      // A line every 2 s at most, and each milestone.
      if (!milestone && performance.now() - lastLine < 2000) return;
      lastLine = performance.now();
      const pct = rowsTotal ? Math.floor((100 * rowsDone) / rowsTotal) : 100;
      const secs = ((performance.now() - started) / 1000).toFixed(0);
      process.stderr.write(`${what}: ${pct}% (${rowsDone} of ${rowsTotal} rows), ${mb(bytes)} MB, ${secs} s: ${step}\n`);
    },
    stop() {
      bar?.stop();
    },
  };
}
