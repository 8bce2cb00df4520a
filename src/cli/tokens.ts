/*
 * `listkeeper token create --scope read|moderate|admin [--name N] [--days N]`, `token ls [--json]`
 * and `token revoke ID`: tokens of the REST API (docs/api.md), as the panel's /admin/tokens makes
 * them (core/api-tokens.ts: audited as cli:USER). The token itself is printed once, on create. A
 * token made here is the operator's: no account's rights bound it, only `--days` and revoking.
 */

import type { Command } from 'commander';
import { InvalidInput } from '../errors.ts';
import { cliActor, printJson, printTable, runCommand } from './context.ts';

export function registerTokenCommands(program: Command) {
  const token = program.command('token').description('tokens of the REST API (/api/v1)');

  token
    .command('create')
    .requiredOption('--scope <scope>', 'read|moderate|admin (each includes the ones before it)')
    .option('--name <name>', 'what the token is for, shown in the audit log (default "api")')
    .option('--days <n>', 'the token stops working after N days (1 to 99999; default: never)')
    .option('--json', 'machine-readable output: {id, name, scope, token, expires_at}')
    .description('make an API token; it is printed once and cannot be shown again')
    .action((o: { scope: string; name?: string; days?: string; json?: boolean }) =>
      runCommand(async ({ db }) => {
        const { createApiToken, parseScope } = await import('../core/api-tokens.ts');
        const { parseDays } = await import('../days.ts');
        const scope = parseScope(o.scope);
        if (o.days !== undefined && !o.days.trim()) throw new InvalidInput('--days needs a number of days');
        const { token: secret, row } = await createApiToken(db.pool, { scope, name: o.name, actor: cliActor(), days: parseDays(o.days, 'days') });
        if (o.json) return printJson({ id: row.id, name: row.name, scope: row.scope, token: secret, expires_at: row.expires_at });
        process.stdout.write(`${secret}\n`);
        const lapses = row.expires_at ? `, until ${row.expires_at.toISOString()}` : '';
        process.stderr.write(`token ${row.id} "${row.name}" (${row.scope}${lapses}): keep it now, it is not shown again. Send it as "Authorization: Bearer TOKEN".\n`);
      }),
    );

  token
    .command('ls')
    .option('--json', 'machine-readable output')
    .description('all API tokens (never their secrets), revoked ones too, and whether each works (state)')
    .action((o: { json?: boolean }) =>
      runCommand(async ({ db }) => {
        const { allApiTokens } = await import('../db/api-tokens.ts');
        const rows = await allApiTokens(db.pool);
        if (o.json) return printJson(rows);
        if (rows.length === 0) return void process.stdout.write('no API tokens yet: listkeeper token create --scope read\n');
        printTable(rows.map((r) => ({ ...r })), ['id', 'name', 'scope', 'state', 'created_at', 'expires_at', 'last_used_at', 'created_by']);
      }),
    );

  token
    .command('revoke')
    .argument('<id>', 'the token\'s id (see `listkeeper token ls`)')
    .description('revoke an API token: its next request is refused')
    .action((id: string) =>
      runCommand(async ({ db }) => {
        if (!/^\d{1,15}$/.test(id)) throw new InvalidInput(`token id must be a number (got "${id}")`);
        const { revokeApiToken } = await import('../core/api-tokens.ts');
        const row = await revokeApiToken(db.pool, Number(id), { actor: cliActor() });
        process.stdout.write(`token ${row.id} "${row.name}" revoked\n`);
      }),
    );
}
