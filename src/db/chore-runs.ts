/*
 * Chores the whole fleet of delivery workers runs once per interval, whichever worker it is and
 * however often workers restart (sql/0089): the run is claimed with the row, so one worker runs it.
 */

import type { Queryable } from './pool.ts';

/** Whether this worker is to run chore `name` now: true when it last ran `everySeconds` ago or more, claiming this run. */
export async function claimChoreRun(db: Queryable, name: string, everySeconds: number): Promise<boolean> {
  const { rowCount } = await db.query(
    `insert into chore_runs (name, ran_at) values ($1, now())
     on conflict (name) do update set ran_at = now() where chore_runs.ran_at <= now() - make_interval(secs => $2)`,
    [name, everySeconds],
  );
  return rowCount === 1;
}
