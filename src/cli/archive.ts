import type { Command } from 'commander';

/** Reserved command names (DESIGN §4); implemented by the issue that gives them meaning. */
export function registerArchiveCommands(program: Command) {
  program.command('import', { hidden: true }).allowUnknownOption().allowExcessArguments().action(() => {
    process.stderr.write('listkeeper: "import" is not available in this version yet\n');
    process.exitCode = 1;
  });
  program.command('export', { hidden: true }).allowUnknownOption().allowExcessArguments().action(() => {
    process.stderr.write('listkeeper: "export" is not available in this version yet\n');
    process.exitCode = 1;
  });
}
