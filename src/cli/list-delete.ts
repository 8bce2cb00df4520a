/*
 * `listkeeper list delete LIST`: deletes a list for good, as the panel's Delete does, after
 * saying what goes with it. On a terminal it asks first (the list's address typed, or `--yes`);
 * from a script (no terminal) it does what it was told, as DESIGN's `list delete LIST` and
 * Mailman's `mailman remove` do.
 */

import type { Command } from 'commander';
import readline from 'node:readline/promises';
import { InvalidInput } from '../errors.ts';
import type { DeletionImpact } from '../db/list-admin.ts';
import { cliActor, printJson, runCommand } from './context.ts';

export function registerListDelete(list: Command) {
  list
    .command('delete')
    .argument('<list>', 'list address, or its local part when unique')
    .option('--yes', 'delete without asking on a terminal (a script is never asked)')
    .option('--json', 'machine-readable output: {address, deleted, members, messages, only_here, roles}')
    .description('delete a list for good: its members, roles, held posts and the messages archived in it alone')
    .action((ref: string, o: { yes?: boolean; json?: boolean }) =>
      runCommand(async ({ cfg, db }) => {
        const { findList } = await import('../db/lists.ts');
        const { deletionImpact } = await import('../db/list-admin.ts');
        const { deleteList } = await import('../core/lists.ts');
        const list = await findList(db.pool, ref, { mailDomain: cfg.mailDomain });
        if (!o.yes && process.stdin.isTTY) {
          // A person at a terminal confirms by typing the address.
          process.stderr.write(impactText(list.address, await deletionImpact(db.pool, list.id)));
          const rl = readline.createInterface({ input: process.stdin, output: process.stderr });
          const answer = await rl.question(`Type ${list.address} to delete it for good: `).finally(() => rl.close());
          if (answer.trim().toLowerCase() !== list.address) throw new InvalidInput(`not deleted: the answer was not ${list.address}`);
        }
        const impact = await deleteList(db.pool, list, { actor: cliActor() });
        if (o.json) return printJson({ address: list.address, deleted: true, members: impact.members, messages: impact.messages, only_here: impact.onlyHere, roles: impact.roles });
        process.stdout.write(
          `deleted list ${list.address}: ${plural(impact.members, 'member')}, ${plural(impact.roles, 'owner and moderator role')}, ` +
          `${plural(impact.onlyHere, 'archived message')} that were in no other list` +
          `${impact.messages > impact.onlyHere ? ` (${impact.messages - impact.onlyHere} cross-posted stay in their other lists)` : ''}\n`,
        );
      }),
    );
}

/** What deleting takes with it, in the words of the panel's confirmation page. */
function impactText(address: string, impact: DeletionImpact): string {
  return `Deleting ${address} cannot be undone. It:\n` +
    `  - removes its ${plural(impact.members, 'member')} (they are not told) and its ${plural(impact.roles, 'owner and moderator role')};\n` +
    `  - deletes its archive: ${impact.onlyHere} of its ${plural(impact.messages, 'message')} are in no other list and disappear, permalinks included;\n` +
    '  - drops its held messages, pending subscription requests and queued deliveries;\n' +
    `  - makes mail to ${address} and its -request, -owner and -bounces addresses bounce as unknown.\n`;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}
