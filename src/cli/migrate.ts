import type { Command } from 'commander';
import { runCommand } from './context.ts';

export function registerMigrate(program: Command) {
  program
    .command('migrate')
    .description('apply pending database migrations (also done at every start)')
    .action(() =>
      runCommand(async () => {
        // openDatabase() has already migrated under the advisory lock.
        process.stdout.write('database is up to date\n');
      }),
    );
}
