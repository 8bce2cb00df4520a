import type { Command } from 'commander';

/** Reserved command names (DESIGN §4); implemented by the issue that gives them meaning. */
export function registerAdminCommands(program: Command) {
  program.command('admin', { hidden: true }).allowUnknownOption().allowExcessArguments().action(() => {
    process.stderr.write('listkeeper: "admin" is not available in this version yet\n');
    process.exitCode = 1;
  });
}
