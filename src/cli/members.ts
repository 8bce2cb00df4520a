import type { Command } from 'commander';
import { InvalidInput } from '../errors.ts';
import { DELIVERY_MODES, isOneOf } from '../list-policies.ts';
import { cliActor, printJson, printTable, reportEach, runCommand, type EachResult } from './context.ts';

/** What `subscribe` and `unsubscribe` were given: `EMAIL` or `"Name <EMAIL>"`, checked one by one. */
interface Mailbox { input: string; email: string | null; name: string | null }

async function mailboxes(values: string[]): Promise<Mailbox[]> {
  const { parseMailbox } = await import('../mail/address.ts');
  return values.map((input) => ({ input, ...parseMailbox(input) }));
}

function refused(m: Mailbox): EachResult {
  return { input: m.input, result: 'invalid', error: `"${m.input}" is not an e-mail address` };
}

export function registerMemberCommands(program: Command) {
  program
    .command('subscribe')
    .argument('<list>')
    .argument('<email...>', 'EMAIL or "Name <EMAIL>"')
    .option('--mode <mode>', 'each|digest|nomail', 'each')
    .option('--until <YYYY-MM-DD>', 'with --mode nomail: pause delivery until that day (UTC), then go back to the mode held before')
    .option('--json', 'machine-readable output: [{email, name, result}] (added, reactivated, updated, unchanged; invalid with input and error)')
    .description('add members (an administrator add: no confirmation is asked); every valid address is added, the exit code is 1 if any was not')
    .action((ref: string, addrs: string[], o: { mode: string; until?: string; json?: boolean }) =>
      runCommand(async ({ cfg, db }) => {
        if (!isOneOf(o.mode, DELIVERY_MODES)) throw new InvalidInput(`--mode must be one of ${DELIVERY_MODES.join(', ')} (got "${o.mode}")`);
        if (o.until !== undefined && o.mode !== 'nomail') throw new InvalidInput('--until goes with --mode nomail (a pause of delivery that ends that day)');
        const { parseResumeDate } = await import('../core/vacation.ts');
        const until = o.until === undefined ? null : parseResumeDate(o.until);
        const { findList } = await import('../db/lists.ts');
        const { addMembers } = await import('../core/members.ts');
        const list = await findList(db.pool, ref, { mailDomain: cfg.mailDomain });
        const given = await mailboxes(addrs);
        const good = given.filter((m) => m.email !== null);
        // The operator's own adds: no OWNER_ADDS_PER_DAY cap.
        const { done: added } = await addMembers(db.pool, list, good.map((m) => ({ email: m.email!, name: m.name })), { actor: cliActor(), mode: o.mode, until, settings: cfg });
        let next = 0;
        const results = given.map((m): EachResult => (m.email === null ? refused(m) : { email: m.email, name: m.name, result: added[next++].outcome }));
        reportEach(results, o.json, { unchanged: 'already subscribed' });
      }),
    );

  program
    .command('unsubscribe')
    .argument('<list>')
    .argument('<email...>', 'EMAIL or "Name <EMAIL>"')
    .option('--json', 'machine-readable output: [{email, result}] (unsubscribed, unchanged; invalid with input and error)')
    .description('remove members; every valid address is removed, the exit code is 1 if any was not')
    .action((ref: string, addrs: string[], o: { json?: boolean }) =>
      runCommand(async ({ cfg, db }) => {
        const { findList } = await import('../db/lists.ts');
        const { changeMembers } = await import('../core/members.ts');
        const list = await findList(db.pool, ref, { mailDomain: cfg.mailDomain });
        const given = await mailboxes(addrs);
        const removed = await changeMembers(db.pool, list, given.flatMap((m) => (m.email ? [m.email] : [])), 'remove', { actor: cliActor() });
        let next = 0;
        const results = given.map((m): EachResult => (m.email === null ? refused(m) : { email: m.email, result: removed[next++] ? 'unsubscribed' : 'unchanged' }));
        reportEach(results, o.json, { unchanged: 'was not subscribed' });
      }),
    );

  program
    .command('members')
    .argument('<list>')
    .option('--json', 'machine-readable output')
    .description("a list's members")
    .action((ref: string, o) =>
      runCommand(async ({ cfg, db }) => {
        const { findList } = await import('../db/lists.ts');
        const { memberRoster } = await import('../db/members.ts');
        const list = await findList(db.pool, ref, { mailDomain: cfg.mailDomain });
        const rows = await memberRoster(db.pool, list.id);
        // The documented shape, plus nomail_until only for a member whose nomail has an end date.
        if (o.json) return printJson(rows.map(({ nomail_until, ...r }) => (nomail_until ? { ...r, nomail_until } : r)));
        printTable(rows, ['email', 'name', 'mode', 'status', 'bounce_score']);
      }),
    );
}
