import type { Command } from 'commander';
import { runCommand } from './context.ts';

export function registerMigrate(program: Command) {
  program
    .command('migrate')
    .description('apply pending database migrations (also done at every start) and say which')
    .action(() =>
      runCommand(async ({ db }) => {
        // Opened without migrating, so that this command can name what it applies.
        const { migrate, migrationState, newerSchema } = await import('../db/migrate.ts');
        const applied = await migrate(db.sessionPool ?? db.pool);
        const { newer } = await migrationState(db.pool);
        if (applied.length > 0) process.stdout.write(`applied ${applied.join(', ')}\n`);
        else if (newer.length === 0) process.stdout.write('nothing to apply: the database is up to date\n');
        else process.stdout.write(`nothing to apply, and ${newerSchema(newer)}\n`);
      }, { migrate: false }),
    );
}
