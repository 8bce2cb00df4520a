import { Command } from 'commander';
import { registerAdminCommands } from './cli/admin.ts';
import { registerArchiveCommands } from './cli/archive.ts';
import { registerDoctorCommand } from './cli/doctor.ts';
import { registerBackupCommands } from './cli/backup.ts';
import { registerListCommands } from './cli/lists.ts';
import { registerMailmanImport } from './cli/mailman-import.ts';
import { registerMemberCommands } from './cli/members.ts';
import { registerMigrate } from './cli/migrate.ts';
import { registerModerationCommands } from './cli/moderation.ts';
import { registerQueueCommand } from './cli/queue.ts';
import { registerServe } from './cli/serve.ts';
import { registerRoleCommands } from './cli/list-roles.ts';
import { registerSenderRuleCommands } from './cli/sender-rules.ts';
import { registerTokenCommands } from './cli/tokens.ts';

const program = new Command('listkeeper')
  .description('Mailing lists with searchable archives, built around PostgreSQL')
  .version('0.1.0')
  .showHelpAfterError()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) });

registerServe(program);
registerMigrate(program);
registerListCommands(program);
registerMemberCommands(program);
registerRoleCommands(program);
registerSenderRuleCommands(program);
registerArchiveCommands(program);
registerMailmanImport(program);
registerModerationCommands(program);
registerQueueCommand(program);
registerAdminCommands(program);
registerTokenCommands(program);
registerDoctorCommand(program);
registerBackupCommands(program);

await program.parseAsync(process.argv);
