import type { Command } from 'commander';
import { InvalidInput } from '../errors.ts';
import type { ModerationAction } from '../core/hold.ts';
import { cliActor, printJson, printTable, runCommand } from './context.ts';

const ACTIONS: ModerationAction[] = ['approve', 'reject', 'discard'];

export function registerModerationCommands(program: Command) {
  program
    .command('held')
    .argument('<list>', 'list address or unique local part')
    .option('--json', 'machine-readable output')
    .description('messages awaiting moderation')
    .action((ref: string, o) =>
      runCommand(async ({ cfg, db }) => {
        const { findList } = await import('../db/lists.ts');
        const { listHeld } = await import('../core/hold.ts');
        const list = await findList(db.pool, ref, { mailDomain: cfg.mailDomain });
        const held = await listHeld(db.pool, list.id);
        if (o.json) {
          return printJson(held.map((h) => ({ id: h.id, message_id: h.message_id, from: h.from, subject: h.subject, reason: h.reason, received_at: h.received_at })));
        }
        if (held.length === 0) return void process.stdout.write(`nothing is held on ${list.address}\n`);
        printTable(held.map((h) => ({ ...h, received_at: h.received_at.toISOString().slice(0, 16).replace('T', ' ') })), ['id', 'received_at', 'from', 'subject', 'reason']);
      }),
    );

  program
    .command('moderate')
    .argument('<id>', 'held message id (see `listkeeper held LIST`)')
    .argument('<action>', 'approve|reject|discard')
    .option('--reason <text>', 'why (mailed to the sender on reject)')
    .description('approve, reject or discard a held message')
    .action((id: string, action: string, o) =>
      runCommand(async ({ cfg, db }) => {
        if (!/^\d{1,15}$/.test(id)) throw new InvalidInput(`held message id must be a number (got "${id}")`);
        if (!ACTIONS.includes(action as ModerationAction)) throw new InvalidInput(`action must be one of ${ACTIONS.join(', ')} (got "${action}")`);
        const { moderate } = await import('../core/hold.ts');
        await moderate(db.pool, Number(id), action as ModerationAction, { reason: o.reason, actor: cliActor(), settings: cfg });
        const past = { approve: 'approved', reject: 'rejected', discard: 'discarded' }[action as ModerationAction];
        process.stdout.write(`held message ${id} ${past}\n`);
      }),
    );
}
