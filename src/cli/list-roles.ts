/*
 * `listkeeper moderators LIST [add|remove EMAIL...]`: a list's moderators, shown and changed as
 * on the panel's settings page (core/lists.ts addRole, removeRole: audited as cli:USER). Each
 * address is reported on its own; the good ones are done even when one is bad, and the exit
 * code says whether any failed.
 */

import type { Command } from 'commander';
import { InvalidInput } from '../errors.ts';
import { cliActor, printJson, reportEach, runCommand } from './context.ts';

type RoleResult = { email: string; result: 'added' | 'removed' | 'unchanged' } | { input: string; result: 'invalid'; error: string };

export function registerRoleCommands(program: Command) {
  program
    .command('moderators')
    .argument('<list>', 'list address, or its local part when unique')
    .argument('[action]', 'add|remove (without it: the list\'s moderators)')
    .argument('[email...]', 'addresses to add or remove')
    .option('--json', 'machine-readable output')
    .description("show, add or remove a list's moderators")
    .action((ref: string, action: string | undefined, addrs: string[], o: { json?: boolean }) =>
      runCommand(async ({ cfg, db }) => {
        if (action !== undefined && action !== 'add' && action !== 'remove') throw new InvalidInput(`action must be add or remove (got "${action}")`);
        if (action && addrs.length === 0) throw new InvalidInput(`moderators ${action} needs at least one e-mail address`);
        const { findList } = await import('../db/lists.ts');
        const list = await findList(db.pool, ref, { mailDomain: cfg.mailDomain });
        if (!action) {
          const { listRoles } = await import('../db/list-admin.ts');
          const moderators = (await listRoles(db.pool, list.id)).filter((r) => r.role === 'moderator').map((r) => r.email);
          if (o.json) return printJson(moderators.map((email) => ({ email })));
          if (moderators.length === 0) return void process.stdout.write(`${list.address} has no moderators: listkeeper moderators ${list.address} add EMAIL\n`);
          for (const email of moderators) process.stdout.write(`${email}\n`);
          return;
        }
        const { normalizeEmail } = await import('../mail/address.ts');
        const { addRole, removeRole } = await import('../core/lists.ts');
        const results: RoleResult[] = [];
        for (const input of addrs) {
          const email = normalizeEmail(input);
          if (!email) {
            results.push({ input, result: 'invalid', error: `"${input}" is not an e-mail address` });
          } else if (action === 'add') {
            results.push({ email, result: (await addRole(db.pool, list, email, 'moderator', { actor: cliActor() })) ? 'added' : 'unchanged' });
          } else {
            results.push({ email, result: (await removeRole(db.pool, list, email, 'moderator', { actor: cliActor() })) ? 'removed' : 'unchanged' });
          }
        }
        reportEach(results, o.json, { unchanged: action === 'add' ? 'already a moderator' : 'was not a moderator' });
      }),
    );
}
