import type { Command } from 'commander';
import { InvalidInput } from '../errors.ts';
import { runCommand } from './context.ts';

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
}
