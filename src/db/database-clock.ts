/*
 * The database's clock, read from this process. Times that another process or machine compares
 * come from one clock, PostgreSQL's (docs/architecture.md, "One clock"): most are now() in SQL;
 * the few a process must stamp itself (a DKIM signature's t=, an ARC seal's) are the process's
 * clock moved by the skew measured here, so a machine whose clock drifted or jumped signs with
 * the database's time, not its own. Durations within a process use monotonic timers instead.
 */

import type { Queryable } from './pool.ts';

export class DatabaseClock {
  /** the database's clock minus this process's, in ms (0 until measured) */
  private skew = 0;

  get skewMs(): number {
    return this.skew;
  }

  /** The database's time now, as this process reckons it from its last measure. */
  now(): Date {
    return new Date(Date.now() + this.skew);
  }

  /** Reads the database's clock and keeps the skew; the round trip's middle is taken as the moment read. Returns the skew. */
  async measure(db: Queryable): Promise<number> {
    const sent = Date.now();
    const { rows } = await db.query<{ ms: number }>(`select (extract(epoch from clock_timestamp()) * 1000)::float8 as ms`);
    const back = Date.now();
    this.skew = Math.round(rows[0].ms - (sent + back) / 2);
    return this.skew;
  }
}
