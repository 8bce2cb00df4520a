import type { Command } from 'commander';
import { printJson, runCommand } from './context.ts';

export function registerQueueCommand(program: Command) {
  program
    .command('queue')
    .option('--json', 'machine-readable output')
    .description('outbound queue status: rows by state, the oldest waiting, the workers (stale ones marked)')
    .action((o) =>
      runCommand(async ({ db, cfg }) => {
        const { queueStats } = await import('../db/outbox.ts');
        const { redactSecrets } = await import('../log.ts');
        const stats = await queueStats(db.pool, cfg.delivery.leaseSeconds);
        // An error text may quote a URL with its password (a relay's message, a misconfiguration).
        if (stats.oldest?.last_error) stats.oldest.last_error = redactSecrets(stats.oldest.last_error);
        if (o.json) return printJson(stats);
        const c = stats.counts;
        const lines = [
          `queued   ${c.queued}${stats.deferred ? ` (${stats.deferred} waiting to retry)` : ''}`,
          `sending  ${c.sending}`,
          `sent     ${c.sent}`,
          `failed   ${c.failed}`,
          stats.oldest
            ? `oldest   #${stats.oldest.id} to ${stats.oldest.recipient}, queued ${stats.oldest.created_at.toISOString()}, next try ${stats.oldest.run_at.toISOString()}, ${stats.oldest.attempts} attempt(s)${stats.oldest.last_error ? `: ${stats.oldest.last_error}` : ''}`
            : 'oldest   nothing waiting',
          `workers  ${stats.workers.length ? stats.workers.map((w) => (w.stale ? `${w.name} (stale: last heartbeat ${w.heartbeat_at.toISOString()})` : w.name)).join(', ') : 'none running'}`,
        ];
        process.stdout.write(`${lines.join('\n')}\n`);
      }),
    );
}
