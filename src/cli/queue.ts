import type { Command } from 'commander';

/** Reserved command names (DESIGN §4); implemented by the issue that gives them meaning. */
export function registerQueueCommand(program: Command) {
  program.command('queue', { hidden: true }).allowUnknownOption().allowExcessArguments().action(() => {
    process.stderr.write('listkeeper: "queue" is not available in this version yet\n');
    process.exitCode = 1;
  });
}
