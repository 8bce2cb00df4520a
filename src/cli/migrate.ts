import type { Command } from 'commander';
import { runCommand } from './context.ts';

export function registerMigrate(program: Command) {
  program
    .command('migrate')
    .description('apply pending database migrations (also done at every start) and say which')
    .action(() =>
      runCommand(async ({ db }) => {
        // Opened without migrating, so that this command can name what it applies.
        const { migrate } = await import('../db/migrate.ts');
        const applied = await migrate(db.sessionPool ?? db.pool);
        process.stdout.write(applied.length === 0 ? 'nothing to apply: the database is up to date\n' : `applied ${applied.join(', ')}\n`);
      }, { migrate: false }),
    );
}
