/*
 * The V8 heap flags bin/listkeeper.js gives Node (docs/operations.md "Pool sizing and memory"):
 * a young generation of 8 MB when started as users start it (the #! line), and V8's own 32 MB
 * without the #! line. A preloaded module fills the young generation with garbage, so that V8
 * grows it as far as it may, and reports its size and the process's flags as the process exits.
 */

import { spawn } from 'node:child_process';
import { expect, it } from 'vitest';
import { BIN } from './helpers/cli.ts';

const REPORT = `
import v8 from 'node:v8';
let garbage = [];
for (let i = 0; i < 4e6; i++) {
  garbage.push({ i });
  if (garbage.length > 3e5) garbage = [];
}
process.on('exit', () => {
  const young = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
  process.stderr.write('HEAP ' + JSON.stringify({ youngMb: young.space_size / 1048576, execArgv: process.execArgv }) + '\\n');
});
`;

function run(command: string, args: string[]): Promise<{ youngMb: number; execArgv: string[] }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, [...args, '--version'], {
      env: { ...process.env, NODE_OPTIONS: `--import=data:text/javascript,${encodeURIComponent(REPORT)}` },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', () => {
      const line = /^HEAP (.*)$/m.exec(stderr);
      if (line) resolve(JSON.parse(line[1]));
      else reject(new Error(`no report: ${stderr}`));
    });
  });
}

it('runs Node with an 8 MB young generation when started as `listkeeper`', async () => {
  const r = await run(BIN, []);
  expect(r.execArgv).toContain('--max-semi-space-size=4');
  expect(r.youngMb).toBeLessThanOrEqual(8);
});

it('leaves V8 its own young generation when started without the #! line, as the docs say', async () => {
  const r = await run(process.execPath, [BIN]);
  expect(r.execArgv).not.toContain('--max-semi-space-size=4');
  expect(r.youngMb).toBeGreaterThan(8);
});
