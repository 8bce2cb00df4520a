import type { Command } from 'commander';
import { InvalidInput } from '../errors.ts';
import { findList } from '../db/lists.ts';
import { memberRoster } from '../db/members.ts';
import { DELIVERY_MODES, isOneOf } from '../list-policies.ts';
import { normalizeEmail } from '../mail/address.ts';
import { addMembers, changeMembers } from '../core/members.ts';
import { cliActor, printJson, printTable, runCommand } from './context.ts';

function emails(values: string[]): string[] {
  return values.map((v) => {
    const email = normalizeEmail(v);
    if (!email) throw new InvalidInput(`"${v}" is not an e-mail address`);
    return email;
  });
}

export function registerMemberCommands(program: Command) {
  program
    .command('subscribe')
    .argument('<list>')
    .argument('<email...>')
    .option('--mode <mode>', 'each|digest|nomail', 'each')
    .description('add members (an administrator add: no confirmation is asked)')
    .action((ref: string, addrs: string[], o) =>
      runCommand(async ({ db }) => {
        if (!isOneOf(o.mode, DELIVERY_MODES)) throw new InvalidInput(`--mode must be one of ${DELIVERY_MODES.join(', ')} (got "${o.mode}")`);
        const list = await findList(db.pool, ref);
        for (const { email, outcome } of await addMembers(db.pool, list, emails(addrs).map((email) => ({ email })), { actor: cliActor(), mode: o.mode })) {
          process.stdout.write(`${email}: ${outcome === 'unchanged' ? 'already subscribed' : outcome}\n`);
        }
      }),
    );

  program
    .command('unsubscribe')
    .argument('<list>')
    .argument('<email...>')
    .description('remove members')
    .action((ref: string, addrs: string[]) =>
      runCommand(async ({ db }) => {
        const list = await findList(db.pool, ref);
        const all = emails(addrs);
        const removed = await changeMembers(db.pool, list, all, 'remove', { actor: cliActor() });
        for (const [i, email] of all.entries()) process.stdout.write(`${email}: ${removed[i] ? 'unsubscribed' : 'was not subscribed'}\n`);
      }),
    );

  program
    .command('members')
    .argument('<list>')
    .option('--json', 'machine-readable output')
    .description("a list's members")
    .action((ref: string, o) =>
      runCommand(async ({ db }) => {
        const list = await findList(db.pool, ref);
        const rows = await memberRoster(db.pool, list.id);
        if (o.json) return printJson(rows);
        printTable(rows, ['email', 'name', 'mode', 'status', 'bounce_score']);
      }),
    );
}
