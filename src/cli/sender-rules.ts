/*
 * `listkeeper rules LIST [allow|ban|remove PATTERN [--days N]]`: a list's sender rules, an
 * address or a whole @domain always accepted (allow) or silently dropped (ban), as the held
 * queue's form sets them (core/sender-rules.ts: audited as cli:USER).
 */

import type { Command } from 'commander';
import { InvalidInput } from '../errors.ts';
import { cliActor, printJson, printTable, runCommand } from './context.ts';
import { parseDays } from '../days.ts';

const ACTIONS = ['allow', 'ban', 'remove'] as const;

export function registerSenderRuleCommands(program: Command) {
  program
    .command('rules')
    .argument('<list>', 'list address, or its local part when unique')
    .argument('[action]', 'allow|ban|remove (without it: the list\'s rules)')
    .argument('[pattern]', 'an e-mail address or @domain')
    .option('--days <n>', 'the rule lapses after N days (allow and ban)')
    .option('--json', 'machine-readable output')
    .description('show or change who is always accepted (allow) or dropped (ban) on a list')
    .action((ref: string, action: string | undefined, pattern: string | undefined, o: { days?: string; json?: boolean }) =>
      runCommand(async ({ cfg, db }) => {
        if (action !== undefined && !(ACTIONS as readonly string[]).includes(action)) throw new InvalidInput(`action must be one of ${ACTIONS.join(', ')} (got "${action}")`);
        if (action && pattern === undefined) throw new InvalidInput(`rules ${action} needs an e-mail address or @domain`);
        if (o.days !== undefined && action !== 'allow' && action !== 'ban') throw new InvalidInput('--days goes with allow or ban');
        const days = parseDays(o.days, '--days');
        const { findList } = await import('../db/lists.ts');
        const { addSenderRule, listSenderRules, removeSenderRule, senderKey } = await import('../core/sender-rules.ts');
        const list = await findList(db.pool, ref, { mailDomain: cfg.mailDomain });
        if (!action) {
          const rules = (await listSenderRules(db.pool, list.id)).map((r) => ({ pattern: r.email, kind: r.kind, expires_at: r.expires_at, created_by: r.created_by, created_at: r.created_at }));
          if (o.json) return printJson(rules);
          if (rules.length === 0) return void process.stdout.write(`${list.address} has no sender rules\n`);
          return printTable(rules, ['pattern', 'kind', 'expires_at', 'created_by']);
        }
        if (action === 'remove') {
          const removed = await removeSenderRule(db.pool, list, pattern!, { actor: cliActor() });
          const key = senderKey(pattern!);
          if (o.json) return printJson({ pattern: key, removed });
          return void process.stdout.write(removed ? `${key}: rule removed\n` : `${key}: there was no rule: nothing changed\n`);
        }
        const rule = await addSenderRule(db.pool, list, pattern!, action as 'allow' | 'ban', { days, actor: cliActor() });
        if (o.json) return printJson({ pattern: rule.email, kind: rule.kind, expires_at: rule.expires_at });
        process.stdout.write(`${rule.email}: ${rule.kind === 'allow' ? 'always accepted' : 'banned'} on ${list.address}${rule.expires_at ? ` until ${rule.expires_at.toISOString().slice(0, 16).replace('T', ' ')} UTC` : ''}\n`);
      }),
    );
}
