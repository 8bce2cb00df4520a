/*
 * A child process whose wall clock is off this machine's (and so the database's), through
 * libfaketime (Debian's package faketime, installed by .ci/run): Date.now() and new Date() move,
 * the monotonic clock (performance.now(), timers) does not, as on a machine whose clock drifted.
 */

import fs from 'node:fs';

const LIBFAKETIME = ['/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1', '/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1'];

/** The environment for a child whose clock is `offset` off ("+2h", "-5m", libfaketime's form). */
export function skewedClock(offset: string): Record<string, string> {
  const lib = LIBFAKETIME.find((f) => fs.existsSync(f));
  if (!lib) throw new Error('libfaketime is missing: apt-get install faketime (.ci/run installs it)');
  return { LD_PRELOAD: lib, FAKETIME: offset, FAKETIME_DONT_FAKE_MONOTONIC: '1' };
}
