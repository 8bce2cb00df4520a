import { Command } from 'commander';
import { registerListCommands } from './cli/lists.ts';
import { registerMemberCommands } from './cli/members.ts';
import { registerMigrate } from './cli/migrate.ts';
import { registerServe } from './cli/serve.ts';

const program = new Command('listkeeper')
  .description('Mailing lists with searchable archives, built around PostgreSQL')
  .version('0.1.0')
  .showHelpAfterError()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) });

registerServe(program);
registerMigrate(program);
registerListCommands(program);
registerMemberCommands(program);

await program.parseAsync(process.argv);
