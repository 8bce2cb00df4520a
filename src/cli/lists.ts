import type { Command } from 'commander';
import { InvalidInput } from '../errors.ts';
import { ARCHIVE_POLICIES, POST_POLICIES, SUBSCRIBE_POLICIES } from '../list-policies.ts';
import { cliActor, collect, printJson, printTable, runCommand } from './context.ts';
import { registerListDelete } from './list-delete.ts';
import { INPUT_LIMITS, readInputFile } from './input-file.ts';

// Each action imports the modules it uses (await import), so a command loads only its own.

function oneOf<T extends string>(name: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) throw new InvalidInput(`${name} must be one of ${allowed.join(', ')} (got "${value}")`);
  return value as T;
}

export function registerListCommands(program: Command) {
  const list = program.command('list').description('create, change, inspect and delete lists');

  list
    .command('create')
    .argument('<address>', 'list address; without @ the MAIL_DOMAIN is used')
    .option('--name <name>', 'display name')
    .option('--description <text>', 'one-line description', '')
    .option('--owner <email>', 'owner address (repeatable)', collect, [])
    .option('--post-policy <policy>', 'open|members|moderated', 'members')
    .option('--subscribe-policy <policy>', 'open|confirm|approve', 'confirm')
    .option('--archive <visibility>', 'public|members|private', 'public')
    .description('create a list')
    .action((address: string, o) =>
      runCommand(async ({ cfg, db }) => {
        const { normalizeEmail } = await import('../mail/address.ts');
        const { createList } = await import('../core/lists.ts');
        const owners = (o.owner as string[]).map((e) => {
          const email = normalizeEmail(e);
          if (!email) throw new InvalidInput(`--owner "${e}" is not an e-mail address`);
          return email;
        });
        const created = await createList(db.pool, {
          address,
          name: o.name,
          description: o.description,
          postPolicy: oneOf('--post-policy', o.postPolicy, POST_POLICIES),
          subscribePolicy: oneOf('--subscribe-policy', o.subscribePolicy, SUBSCRIBE_POLICIES),
          archive: oneOf('--archive', o.archive, ARCHIVE_POLICIES),
          owners,
        }, { actor: cliActor(), mailDomain: cfg.mailDomain });
        process.stdout.write(`created list ${created.address}\n`);
      }),
    );

  list
    .command('show')
    .argument('<address>', 'list address; without @ it takes MAIL_DOMAIN (or names the one list with that local part)')
    .option('--json', 'machine-readable output')
    .description('show one list')
    .action((ref: string, o) =>
      runCommand(async ({ cfg, db }) => {
        const { findList } = await import('../db/lists.ts');
        const { listSummary } = await import('../core/list-summary.ts');
        const info = await listSummary(db.pool, await findList(db.pool, ref, { mailDomain: cfg.mailDomain }));
        if (o.json) return printJson(info);
        for (const [k, v] of Object.entries(info)) {
          process.stdout.write(`${k.padEnd(17)} ${Array.isArray(v) ? v.join(', ') : v instanceof Date ? v.toISOString() : (v ?? '')}\n`);
        }
      }),
    );

  list
    .command('set')
    .argument('<list>', 'list address, or its local part when unique')
    .argument('<settings...>', 'KEY=VALUE pairs; VALUE @FILE reads a file; KEY= clears an optional setting')
    .description('change settings by name (those `list show LIST --json` prints; docs/command-line.md)')
    .action((ref: string, settings: string[]) =>
      runCommand(async ({ cfg, db }) => {
        const { findList } = await import('../db/lists.ts');
        const { parseListSettings, setListSettings } = await import('../core/list-settings.ts');
        const pairs = settings.map((s): [string, string] => {
          const eq = s.indexOf('=');
          if (eq <= 0) throw new InvalidInput(`"${s}" is not KEY=VALUE`);
          const value = s.slice(eq + 1);
          return [s.slice(0, eq), value.startsWith('@') ? readValueFile(s.slice(0, eq), value.slice(1)) : value];
        });
        const list = await findList(db.pool, ref, { mailDomain: cfg.mailDomain });
        const changed = await setListSettings(db.pool, list, parseListSettings(pairs), { actor: cliActor() });
        const names = Object.keys(changed);
        process.stdout.write(names.length > 0 ? `${list.address}: changed ${names.join(', ')}\n` : `${list.address}: nothing changed\n`);
      }),
    );

  list
    .command('dkim')
    .argument('<list>', 'list address, or its local part when unique')
    .option('--generate', 'make a new RSA-2048 key for the list (replacing any) and store it')
    .option('--selector <selector>', 'the selector of the new key (default: the list\'s local part and today\'s date, e.g. dev-20250601)')
    .description('show the DNS record of the list\'s DKIM key, or make a new key with --generate')
    .action((ref: string, o) =>
      runCommand(async ({ cfg, db }) => {
        if (o.selector !== undefined && !o.generate) throw new InvalidInput('--selector goes with --generate');
        const { findList } = await import('../db/lists.ts');
        const { currentListKey, generateListKey } = await import('../core/list-dkim.ts');
        const list = await findList(db.pool, ref, { mailDomain: cfg.mailDomain });
        const dkim = o.generate ? await generateListKey(db.pool, list, { selector: o.selector, actor: cliActor() }) : currentListKey(list);
        if (!dkim) return void process.stdout.write(`${list.address} has no DKIM key: make one with "listkeeper list dkim ${list.address} --generate"\n`);
        process.stdout.write(
          `${list.address} ${o.generate ? 'now signs' : 'signs'} its copies as d=${dkim.domain}, s=${dkim.selector}.\n` +
          `Publish this DNS record${o.generate ? ' (copies fail DKIM until it is published)' : ''}:\n\n${dkim.record}\n`,
        );
      }),
    );

  list
    .command('ls')
    .option('--json', 'machine-readable output')
    .description('all lists')
    .action((o) =>
      runCommand(async ({ db }) => {
        const { allLists } = await import('../db/lists.ts');
        const { listSummary } = await import('../core/list-summary.ts');
        const rows = await Promise.all((await allLists(db.pool)).map((l) => listSummary(db.pool, l)));
        if (o.json) return printJson(rows);
        if (rows.length === 0) return void process.stdout.write('no lists yet: listkeeper list create NAME\n');
        printTable(rows, ['address', 'post_policy', 'archive', 'members', 'messages', 'description']);
      }),
    );

  registerListDelete(list);
}

/** The text of a settings file (`KEY=@FILE`), with one clear error when it cannot be read. */
function readValueFile(key: string, file: string): string {
  const bytes = readInputFile(file, key === 'dkim_private_key' ? INPUT_LIMITS.dkimKey : INPUT_LIMITS.setting);
  try {
    // One final line end, as editors write it, LF or CRLF.
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes).replace(/\r?\n$/, '');
  } catch {
    throw new InvalidInput(`${file} is not UTF-8 text`);
  }
}
