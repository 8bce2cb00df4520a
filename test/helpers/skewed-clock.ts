/*
 * A child process whose wall clock is off this machine's (and so the database's), through
 * libfaketime (Debian's package faketime, installed by .ci/run): Date.now() and new Date() move,
 * the monotonic clock (performance.now(), timers) does not, as on a machine whose clock drifted.
 */

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const LIBFAKETIME = ['/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1', '/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1'];

/** The environment for a child whose clock is `offset` off ("+2h", "-5m", libfaketime's form). */
export function skewedClock(offset: string): Record<string, string> {
  return { LD_PRELOAD: libfaketime(), FAKETIME: offset, FAKETIME_DONT_FAKE_MONOTONIC: '1' };
}

/** A child's clock that jumps when told: `env` for the child, then jump("+10m") moves it (the file is read at every call). */
export function jumpingClock(): { env: Record<string, string>; jump(offset: string): void; remove(): void } {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'faketime-')), 'offset');
  fs.writeFileSync(file, '+0\n');
  return {
    env: { LD_PRELOAD: libfaketime(), FAKETIME_TIMESTAMP_FILE: file, FAKETIME_NO_CACHE: '1', FAKETIME_DONT_FAKE_MONOTONIC: '1' },
    jump: (offset) => fs.writeFileSync(file, `${offset}\n`),
    remove: () => fs.rmSync(path.dirname(file), { recursive: true, force: true }),
  };
}

function libfaketime(): string {
  const lib = LIBFAKETIME.find((f) => fs.existsSync(f));
  if (!lib) throw new Error('libfaketime is missing: apt-get install faketime (.ci/run installs it)');
  return lib;
}
