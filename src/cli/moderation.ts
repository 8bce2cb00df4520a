import type { Command } from 'commander';

/** Reserved command names (DESIGN §4); implemented by the issue that gives them meaning. */
export function registerModerationCommands(program: Command) {
  program.command('held', { hidden: true }).allowUnknownOption().allowExcessArguments().action(() => {
    process.stderr.write('listkeeper: "held" is not available in this version yet\n');
    process.exitCode = 1;
  });
  program.command('moderate', { hidden: true }).allowUnknownOption().allowExcessArguments().action(() => {
    process.stderr.write('listkeeper: "moderate" is not available in this version yet\n');
    process.exitCode = 1;
  });
}
