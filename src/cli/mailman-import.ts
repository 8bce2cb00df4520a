/*
 * `listkeeper import-mailman FILE...`: a Mailman 3 list (its REST JSON) or a Mailman 2 list
 * (config_list -o output and list_members output) made into a list here (core/mailman-import.ts).
 * Prints what changed and, a line each, the Mailman settings that have no equivalent. A file of
 * no known format stops it before anything is written; an address that is none is reported on
 * stderr, the others are imported, and the exit code is 1.
 */

import type { Command } from 'commander';
import { cliActor, printJson, runCommand } from './context.ts';
import { INPUT_LIMITS, readInputFile } from './input-file.ts';

export function registerMailmanImport(program: Command) {
  program
    .command('import-mailman')
    .argument('<file...>', 'Mailman 3: the list\'s REST JSON (config, rosters, bans); Mailman 2: config_list -o output and list_members output named …regular…, …digest… (…digest-plain…, …digest-mime…), …nomail…')
    .option('--json', 'machine-readable output: what changed, unmapped settings, refused input')
    .description('create or update a list from a Mailman 3 export or a Mailman 2 list; running it again changes nothing')
    .action((files: string[], o: { json?: boolean }) =>
      runCommand(async ({ db }) => {
        const { decodeText, readMailmanFiles } = await import('../core/mailman-formats.ts');
        const { importMailmanList } = await import('../core/mailman-import.ts');
        const plan = readMailmanFiles(files.map((name) => ({ name, text: decodeText(name, readInputFile(name, INPUT_LIMITS.mailman)) })));
        const r = await importMailmanList(db.pool, plan, { actor: cliActor() });
        for (const p of plan.problems) process.stderr.write(`listkeeper: ${p.error}\n`);
        if (plan.problems.length > 0) process.exitCode = 1;
        if (o.json) return printJson({ ...r, format: plan.format, unmapped: plan.unmapped, problems: plan.problems });
        const out: string[] = [];
        out.push(r.created ? `created list ${r.list} (from ${plan.format === 'mailman3' ? 'Mailman 3' : 'Mailman 2'})` : r.changed ? `updated list ${r.list}` : `${r.list}: nothing changed (already imported)`);
        for (const [k, v] of Object.entries(r.settings)) out.push(`  set ${k} = ${JSON.stringify(v)}`);
        if (r.owners_added.length) out.push(`  owners added: ${r.owners_added.join(', ')}`);
        if (r.moderators_added.length) out.push(`  moderators added: ${r.moderators_added.join(', ')}`);
        const m = r.members;
        out.push(`  members: ${m.added} added, ${m.reactivated} reactivated, ${m.updated} updated, ${m.unchanged} unchanged${m.left_unsubscribed ? `, ${m.left_unsubscribed} left unsubscribed (they unsubscribed here)` : ''}`);
        for (const k of r.kept) {
          const what = [
            k.mode && `mode ${k.mode.here}${k.mode.until ? ` until ${k.mode.until}` : ''} (Mailman: ${k.mode.export})`,
            k.digest_format && `digest format ${k.digest_format.here} (Mailman: ${k.digest_format.export})`,
          ].filter(Boolean).join(', ');
          out.push(`  kept for ${k.email}, changed here since the import: ${what}`);
        }
        for (const rule of r.rules_added) out.push(`  ${rule.kind === 'ban' ? 'banned' : 'always accepted'}: ${rule.pattern}`);
        if (plan.unmapped.length) out.push(`no equivalent for ${plan.unmapped.length} Mailman setting${plan.unmapped.length === 1 ? '' : 's'}:`);
        for (const u of plan.unmapped) out.push(`  ${u.setting} = ${u.value}: ${u.note}`);
        process.stdout.write(`${out.join('\n')}\n`);
      }),
    );
}
