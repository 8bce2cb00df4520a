/* `listkeeper import LIST FILE.mbox` and `listkeeper export LIST [--month YYYY-MM]` (docs/command-line.md). */

import type cliProgress from 'cli-progress';
import type { Command } from 'commander';
import type { BrokenMessage, ImportState } from '../core/archive-import.ts';
import { InvalidInput } from '../errors.ts';
import { loadConfig, runCommand } from './context.ts';

// Each action imports the modules it uses (await import), so a command loads only its own.

export function registerArchiveCommands(program: Command) {
  program
    .command('import')
    .argument('<list>', 'list address or unique local part')
    .argument('<file>', 'mbox or mboxrd file (gzip too): Mailman 2 pipermail, Mailman 3 / HyperKitty exports')
    .option('--batch-size <n>', 'messages per transaction', '500')
    .option('--progress', 'progress lines on stderr when it is not a terminal (a terminal always gets the bar)')
    .description('import an mbox file into a list archive (resumable, idempotent)')
    .action((ref: string, file: string, o) =>
      runCommand(async ({ cfg, db }) => {
        const batchSize = Number(o.batchSize);
        if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 5000) throw new InvalidInput('--batch-size must be a whole number from 1 to 5000');
        const { findList } = await import('../db/lists.ts');
        const { importMbox } = await import('../core/archive-import.ts');
        const list = await findList(db.pool, ref, { mailDomain: cfg.mailDomain });
        const progress = progressReporter(file, (await import('cli-progress')).default, o.progress === true);
        const ac = new AbortController();
        const onSignal = () => {
          if (ac.signal.aborted) process.exit(130);
          ac.abort();
          progress.note('interrupted: finishing the batch in flight (press Ctrl-C again to stop at once)');
        };
        process.on('SIGINT', onSignal);
        process.on('SIGTERM', onSignal);
        let state: ImportState;
        try {
          state = await importMbox(db, list, file, { batchSize, signal: ac.signal, onProgress: progress.update, onBroken: progress.broken });
        } finally {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
          progress.stop();
        }
        const rate = state.seconds > 0 ? Math.round(state.seen / state.seconds) : state.seen;
        const resumed = state.resumedAt !== null ? ` (resumed at message ${state.resumedAt + 1})` : '';
        process.stdout.write(
          `${state.interrupted ? 'interrupted' : 'imported'} ${file} into ${list.address}${resumed}: ` +
            `${state.added} messages added, ${state.duplicates} already archived, ${state.broken} skipped as broken ` +
            `(${state.seconds.toFixed(1)} s, ${rate} msgs/s)\n`,
        );
        // In GNU gzip's words (gzip exits 2 for a warning): every member before them was read, so the import succeeded.
        if (state.trailingGarbage) {
          const { offset, bytes } = state.trailingGarbage;
          process.stderr.write(`warning: ${file}: decompression OK, trailing garbage ignored (${bytes} bytes from byte ${offset} are not gzip data)\n`);
        }
        if (state.interrupted) {
          process.stdout.write('run the same command again to resume\n');
          process.exitCode = 130;
        }
        // The embedded server sized its buffers for the data it started on: a big import outgrows them.
        if (!cfg.databaseUrl && state.added > 0) {
          const buffers = await (await import('../core/doctor-buffers.ts')).embeddedBuffersFinding(db.pool, cfg.dataDir);
          if (buffers.status === 'warn') process.stderr.write(`note: ${buffers.what}: ${buffers.fix}\n`);
        }
      }),
    );

  program
    .command('export')
    .argument('<list>', 'list address or unique local part')
    .option('--month <YYYY-MM>', 'only this month (UTC)')
    .description('write a list archive to stdout as mboxrd')
    .action(async (ref: string, o) => {
      // stdout carries the mbox: keep log lines off it.
      try {
        await loadConfig();
      } catch {
        // runCommand reports it.
      }
      (await import('../log.ts')).log.level = 'silent';
      // A reader that closes the pipe early ends it quietly (runCommand).
      return runCommand(async ({ cfg, db }) => {
        const { monthRange } = await import('../mail/months.ts');
        const { findList } = await import('../db/lists.ts');
        const { exportMbox } = await import('../core/archive-export.ts');
        const range = o.month ? monthRange(o.month) : null;
        if (o.month && !range) throw new InvalidInput(`--month must be YYYY-MM (got "${o.month}")`);
        const list = await findList(db.readPool, ref, { mailDomain: cfg.mailDomain });
        await exportMbox(db.readPool, { listId: list.id, after: range?.start, before: range?.end }, process.stdout);
      });
    });
}

/**
 * A progress bar on a terminal; otherwise plain lines every few seconds with --progress (a log of a
 * long import from cron), nothing without it, so that stderr holds only what went wrong. Both on stderr.
 */
function progressReporter(file: string, progressBars: typeof cliProgress, plainLines: boolean) {
  const tty = process.stderr.isTTY === true;
  const mb = (n: number) => (n / 1048576).toFixed(1);
  const multi = tty
    ? new progressBars.MultiBar(
        { stream: process.stderr, format: 'importing [{bar}] {percentage}% | {done}/{size} MB | {seen} messages | {rate} msgs/s', hideCursor: true, clearOnComplete: false },
        progressBars.Presets.shades_classic,
      )
    : null;
  let bar: cliProgress.SingleBar | null = null;
  let lastLine = -Infinity;
  let reachedEnd = false;
  const line = (s: string) => (multi ? multi.log(`${s}\n`) : process.stderr.write(`${s}\n`));
  return {
    update(s: ImportState) {
      const rate = s.seconds > 0 ? Math.round(s.seen / s.seconds) : 0;
      const payload = { done: mb(s.bytes), size: mb(s.totalBytes), seen: s.seen, rate };
      if (multi) {
        bar ??= multi.create(s.totalBytes, 0, payload);
        bar.update(Math.min(s.bytes, s.totalBytes), payload);
      } else if (plainLines && (performance.now() - lastLine > 2000 || (s.bytes >= s.totalBytes && !reachedEnd))) {
        lastLine = performance.now();
        reachedEnd = s.bytes >= s.totalBytes;
        const pct = s.totalBytes ? Math.floor((100 * s.bytes) / s.totalBytes) : 100;
        line(`import ${file}: ${pct}% (${payload.done} of ${payload.size} MB), ${s.seen} messages, ${s.added} added, ${s.broken} broken, ${rate} msgs/s`);
      }
    },
    broken(b: BrokenMessage) {
      line(`message ${b.index + 1} at byte ${b.offset}${b.messageId ? ` <${b.messageId}>` : ''} skipped: ${b.reason}`);
    },
    note(s: string) {
      line(s);
    },
    stop() {
      multi?.stop();
    },
  };
}
