/*
 * Processes as Linux's /proc shows them, for test helpers that stop what a daemon forked.
 */

import fs from 'node:fs';

/**
 * The fields of a /proc stat file after the command name (state, ppid, …): the name is in
 * parentheses and may itself hold spaces or parentheses.
 */
function statFields(file: string): string[] {
  const stat = fs.readFileSync(file, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** The children of a process (its direct ones). */
export function childPids(pid: number): number[] {
  const found: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const ppid = Number(statFields(`/proc/${entry}/stat`)[1]);
      if (ppid === pid) found.push(Number(entry));
    } catch {
      // exited while we looked
    }
  }
  return found;
}

/** Whether a process still exists (signal 0 tests without sending anything). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Whether every thread of a process is stopped (state T: SIGSTOP has taken effect in each). */
export function allThreadsStopped(pid: number): boolean {
  return fs.readdirSync(`/proc/${pid}/task`).every((tid) => statFields(`/proc/${pid}/task/${tid}/stat`)[0] === 'T');
}
