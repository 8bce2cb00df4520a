import type { Command } from 'commander';
import { printJson, runCommand } from './context.ts';

/**
 * `listkeeper doctor [--json]`: one line per finding (status, what was checked, what was found),
 * with how to fix it under each warn and fail. Exit 1 when anything fails; warnings exit 0.
 * It changes nothing, migrations included: pending ones are a finding.
 */
export function registerDoctorCommand(program: Command) {
  program
    .command('doctor')
    .option('--json', 'machine-readable output: {status, findings: [{status, check, what, fix}]}')
    .description('check a deployment (database, DNS records, certificates, disk, queue) and say how to fix what is wrong; exit 1 if anything fails')
    .action((o) =>
      runCommand(
        async ({ db, cfg }) => {
          (await import('../dns.ts')).useDnsServers(cfg.dnsServers);
          const { runDoctor } = await import('../core/doctor.ts');
          const findings = await runDoctor(db.pool, cfg);
          const status = findings.some((f) => f.status === 'fail') ? 'fail' : findings.some((f) => f.status === 'warn') ? 'warn' : 'ok';
          if (o.json) printJson({ status, findings });
          else {
            const width = Math.max(...findings.map((f) => f.check.length));
            const lines = findings.flatMap((f) => [`${f.status.padEnd(4)}  ${f.check.padEnd(width)}  ${f.what}`, ...(f.fix ? [`${' '.repeat(width + 8)}fix: ${f.fix}`] : [])]);
            const count = (s: string) => findings.filter((f) => f.status === s).length;
            lines.push('', `${count('ok')} ok, ${count('warn')} warn, ${count('fail')} fail`);
            process.stdout.write(`${lines.join('\n')}\n`);
          }
          if (status === 'fail') process.exitCode = 1;
        },
        { migrate: false },
      ),
    );
}
