import type { Command } from 'commander';
import type { ConversionRow } from '../db/conversions.ts';
import { printJson, runCommand } from './context.ts';

export function registerQueueCommand(program: Command) {
  program
    .command('queue')
    .option('--json', 'machine-readable output')
    .description('outbound queue status: rows by state, the oldest waiting, the workers (stale ones marked), background conversions; and the purges waiting for the cache in front (PURGE_URL)')
    .action((o) =>
      runCommand(async ({ db, cfg }) => {
        const { queueStatus } = await import('../core/queue-status.ts');
        const status = await queueStatus(db.pool, cfg);
        if (o.json) return printJson(status);
        const { conversions, purges, ...stats } = status;
        const c = stats.counts;
        const lines = [
          `queued   ${c.queued}${stats.deferred ? ` (${stats.deferred} waiting to retry)` : ''}`,
          `sending  ${c.sending}`,
          `sent     ${c.sent}`,
          `failed   ${c.failed}`,
          `cancelled ${stats.cancelled} (not sent: the member left or paused, or the post was hidden)`,
          stats.oldest
            ? `oldest   #${stats.oldest.id} to ${stats.oldest.recipient}, queued ${stats.oldest.created_at.toISOString()}, next try ${stats.oldest.run_at.toISOString()}, ${stats.oldest.attempts} attempt(s)${stats.oldest.last_error ? `: ${stats.oldest.last_error}` : ''}`
            : 'oldest   nothing waiting',
          `workers  ${stats.workers.length ? stats.workers.map((w) => (w.stale ? `${w.name} (stale: last heartbeat ${w.heartbeat_at.toISOString()})` : w.name)).join(', ') : 'none running'}`,
          ...conversions.map((c) => `conversion ${c.name}: ${conversionState(c)}`),
          `purges   ${purges.keys} key(s) waiting${purges.retrying ? ` (${purges.retrying} to retry)` : ''}${cfg.purge.url ? '' : ' (no PURGE_URL: dropped by the worker)'}`,
          ...(purges.oldest
            ? [`         oldest ${purges.oldest.key}, queued ${purges.oldest.queued_at.toISOString()}, next try ${purges.oldest.run_at.toISOString()}, ${purges.oldest.attempts} attempt(s)${purges.oldest.last_error ? `: ${purges.oldest.last_error}` : ''}`]
            : []),
        ];
        process.stdout.write(`${lines.join('\n')}\n`);
      }),
    );
}

function conversionState(c: ConversionRow): string {
  const skipped = c.last_skipped
    ? `, ${c.rows_skipped} skipped (failed alone; the last, row ${c.last_skipped.key} at ${c.last_skipped.skipped_at.toISOString()}: ${c.last_skipped.error})`
    : '';
  if (c.done_at) return `done ${c.done_at.toISOString()}, ${c.rows_done} rows looked at, ${c.rows_changed} changed${skipped}`;
  const of = c.total_estimate ? ` of about ${c.total_estimate} (${Math.min(100, Math.floor((100 * c.rows_done) / c.total_estimate))}%)` : '';
  const state = c.started_at ? `${c.rows_done} rows${of}, ${c.rows_changed} changed${skipped}, last batch by ${c.locked_by} at ${c.locked_at?.toISOString()}` : 'waiting for a delivery worker';
  return c.error ? `${state}; last error at ${c.error_at?.toISOString()}: ${c.error}` : state;
}
