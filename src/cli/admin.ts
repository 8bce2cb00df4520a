import type { Command } from 'commander';
import { InvalidInput } from '../errors.ts';
import { printJson, printTable, runCommand } from './context.ts';

/** A login link printed by `admin create` without --password stays valid this long. */
const LINK_HOURS = 24;

export function registerAdminCommands(program: Command) {
  const admin = program.command('admin').description('web panel accounts');

  admin
    .command('create')
    .argument('<email>', 'address of the site administrator')
    .option('--password <password>', 'set this password (at least 8 characters); without it a one-time login link is printed')
    .description('create a site administrator (or make an existing account one)')
    .action((address: string, o: { password?: string }) =>
      runCommand(async ({ cfg, db }) => {
        const { normalizeEmail } = await import('../mail/address.ts');
        const { hashPassword } = await import('../auth/credentials.ts');
        const { makeSiteAdmin } = await import('../core/accounts.ts');
        const { issueLoginToken } = await import('../db/accounts.ts');
        const { absoluteUrl, loginLinkUrl } = await import('../mail/urls.ts');
        const email = normalizeEmail(address);
        if (!email) throw new InvalidInput(`"${address}" is not an e-mail address`);
        const passwordHash = o.password !== undefined ? await hashPassword(o.password) : undefined;
        // Entries of this command have always named the actor plain `cli`.
        const { account, created } = await makeSiteAdmin(db.pool, email, { passwordHash, actor: 'cli' });
        process.stdout.write(`${created ? 'created' : 'updated'} site administrator ${account.email}\n`);
        if (passwordHash) {
          process.stdout.write(`log in at ${cfg.publicUrl}/login\n`);
        } else {
          const token = await issueLoginToken(db.pool, email, 'login', LINK_HOURS * 3600);
          process.stdout.write(`one-time login link (valid ${LINK_HOURS} hours):\n  ${absoluteUrl(cfg.publicUrl, loginLinkUrl(token, '/admin/'))}\n`);
        }
      }),
    );
  admin
    .command('ls')
    .option('--json', 'machine-readable output: [{email, via, has_password, created_at, last_login_at}]')
    .description('the site administrators, and who made each one (cli, or the single sign-on\'s admin group)')
    .action((o: { json?: boolean }) =>
      runCommand(async ({ db }) => {
        const { siteAdmins } = await import('../db/accounts.ts');
        const rows = await siteAdmins(db.pool);
        if (o.json) return printJson(rows);
        if (rows.length === 0) return void process.stdout.write('no site administrators yet: listkeeper admin create EMAIL\n');
        printTable(rows.map((r) => ({ ...r })), ['email', 'via', 'has_password', 'created_at', 'last_login_at']);
      }),
    );

  admin
    .command('remove')
    .argument('<email>', 'an address of the site administrator')
    .description('take site-administrator rights away (the account, its list roles and subscriptions stay); refuses the last one')
    .action((address: string) =>
      runCommand(async ({ cfg, db }) => {
        const { normalizeEmail } = await import('../mail/address.ts');
        const { removeSiteAdmin } = await import('../core/accounts.ts');
        const email = normalizeEmail(address);
        if (!email) throw new InvalidInput(`"${address}" is not an e-mail address`);
        const { account, tokens } = await removeSiteAdmin(db.pool, email, { actor: 'cli' });
        process.stdout.write(`${account.email} is no longer a site administrator\n`);
        if (tokens > 0) process.stdout.write(`${tokens} API token${tokens === 1 ? '' : 's'} made by ${account.email} stopped working (listkeeper token ls: maker_not_admin)\n`);
        // A provider's group gives the rights back at the next login: the group is where to remove them.
        // It does so for any account in it, however the account was made one (applySsoSiteAdmin).
        const name = (via: string) => (via === 'oidc' ? 'OpenID Connect provider' : 'LDAP directory');
        if (account.site_admin_via) process.stderr.write(`note: ${account.email} was made one by the ${name(account.site_admin_via)}'s admin group, which gives the rights back at its next login unless the account leaves that group\n`);
        else {
          const groups = [cfg.login.oidc?.adminGroup ? 'oidc' : null, cfg.login.ldap?.adminGroup ? 'ldap' : null].filter((g) => g !== null);
          for (const via of groups) process.stderr.write(`note: the ${name(via)}'s admin group makes its members site administrators when they log in: if ${account.email} is in it, its next login that way gives the rights back\n`);
        }
      }),
    );
}
