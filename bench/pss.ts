/*
 * The whole system's memory for the benchmarks: the PSS (proportional set size: a shared page
 * counted once, split among the processes that share it, so the sum is what the system costs) of
 * the listkeeper processes and of the PostgreSQL processes that serve them, read from
 * /proc/PID/smaps_rollup (PostgreSQL on this host; the benchmarks run as root to read its).
 *
 * listkeeper: the server process the benchmark spawned and its descendants (web processes).
 * PostgreSQL: the backends whose application_name names one of those processes (src/db/pool.ts
 * sets listkeeper:PID:ROLE), so the benchmark's own connections do not count. On a shared server
 * (DATABASE_URL, as the benchmarks usually run) the postmaster and its auxiliaries (checkpointer,
 * WAL writer, autovacuum) serve every database, and are left out; with the embedded server they
 * are ours, and the whole of it counts.
 */

import fs from 'node:fs';
import pg from 'pg';

export interface SystemMemory {
  mb: number;
  processes: number;
  node: { count: number; mb: number };
  postgres: { count: number; mb: number; whole: boolean };
}

function pssKb(pid: number): number | undefined {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined; // gone meanwhile, or not ours to read
  }
}

/** pid and its descendants, from the parent pid of every process in /proc. */
function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // The command name (field 2) is in parentheses and may hold spaces: the parent pid follows the last ')'.
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // exited while listed
    }
  }
  const out: number[] = [];
  for (const todo = [root]; todo.length > 0; ) {
    const pid = todo.pop()!;
    out.push(pid);
    todo.push(...(children.get(pid) ?? []));
  }
  return out;
}

function sum(pids: number[]): { count: number; mb: number } {
  const kbs = pids.map(pssKb).filter((kb): kb is number => kb !== undefined);
  return { count: kbs.length, mb: kbs.reduce((a, b) => a + b, 0) / 1024 };
}

/**
 * The system's PSS now. serverPid: the listkeeper process the benchmark started; url: its
 * database; postmasterPid: the embedded server's postmaster (all of it is ours), else unset.
 */
export async function systemMemory(serverPid: number, url: string, postmasterPid?: number): Promise<SystemMemory> {
  const ours = processTree(serverPid);
  let backends: number[];
  if (postmasterPid) {
    backends = processTree(postmasterPid);
  } else {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const { rows } = await client.query<{ pid: number; app: string }>(
        'select pid, application_name as app from pg_stat_activity where datname = current_database()');
      backends = rows.filter((r) => ours.includes(Number(/^listkeeper:(\d+):/.exec(r.app)?.[1]))).map((r) => r.pid);
    } finally {
      await client.end();
    }
  }
  const node = sum(ours);
  const postgres = { ...sum(backends), whole: postmasterPid !== undefined };
  return { mb: node.mb + postgres.mb, processes: node.count + postgres.count, node, postgres };
}

/** The largest of the samples taken every second while `work` runs (and one as it ends). */
export async function peakMemoryDuring<T>(work: Promise<T>, sample: () => Promise<SystemMemory>): Promise<{ result: T; peak: SystemMemory }> {
  let done = false;
  let peak: SystemMemory | undefined;
  const take = async () => {
    const m = await sample();
    if (!peak || m.mb > peak.mb) peak = m;
  };
  const sampler = (async () => {
    while (!done) {
      await new Promise((r) => setTimeout(r, 1000));
      if (!done) await take();
    }
  })();
  const result = await work.finally(() => (done = true));
  await sampler;
  if (!peak) await take();
  return { result, peak: peak! };
}

export function describeMemory(m: SystemMemory): string {
  const pgPart = m.postgres.whole ? 'embedded PostgreSQL, every process' : 'PostgreSQL backends of our processes (a shared server: postmaster and auxiliaries not counted)';
  return `system PSS ${m.mb.toFixed(0)} MB in ${m.processes} processes: node ${m.node.count} × ${(m.node.mb / Math.max(1, m.node.count)).toFixed(0)} MB = ${m.node.mb.toFixed(0)} MB, ${pgPart} ${m.postgres.count}: ${m.postgres.mb.toFixed(0)} MB`;
}
