/*
 * A failure that repeats, said once. A loop that meets the same fault at every try (the database
 * gone for an hour: the worker's claims, heartbeats, chores and conversions, a LISTEN reconnecting,
 * web requests answered 503) logged a line per try, thousands an hour, burying the one that
 * mattered. Through this, a failure logs one line when it starts (and one for each new kind of
 * error meanwhile), then at most a summary every LOG_REPEAT_SECONDS ("…: still failing", with how
 * many more times), and one line when it recovers ("…: recovered", with how many in all and for
 * how long). docs/operations.md, "Logs".
 */

import type { Logger } from './log.ts';

type Level = 'warn' | 'error';

let summaryMs = 60_000;

/** How often a failure that keeps repeating is summed up (LOG_REPEAT_SECONDS, set by serve). */
export function setRepeatSummarySeconds(seconds: number): void {
  summaryMs = seconds * 1000;
}

interface Streak {
  msg: string;
  level: Level;
  fields: Record<string, unknown>;
  started: number;
  lastLine: number;
  total: number;
  /** failures since the last line */
  unsaid: number;
  kinds: Set<string>;
  last: unknown;
  timer: NodeJS.Timeout | null;
}

export interface RepeatedFailuresOptions {
  /**
   * Where no success is seen (a web request that fails is not followed by one that says the
   * database is back): the streak ends after a summary interval without a failure.
   */
  endsWhenQuiet?: boolean;
}

/** The failures of one owner (a worker, a listener, the web requests), by what failed. */
export class RepeatedFailures {
  private readonly streaks = new Map<string, Streak>();

  constructor(private readonly log: Logger, private readonly opts: RepeatedFailuresOptions = {}) {}

  /**
   * `key` failed with `err`: logged as `msg` with `fields` when it starts or the error is of a new
   * kind; otherwise counted for the next summary.
   */
  failed(key: string, err: unknown, msg: string, fields: Record<string, unknown> = {}, level: Level = 'error'): void {
    const kind = kindOf(err);
    const streak = this.streaks.get(key);
    if (!streak) {
      this.log[level]({ ...fields, err }, msg);
      const now = performance.now();
      const started: Streak = { msg, level, fields, started: now, lastLine: now, total: 1, unsaid: 0, kinds: new Set([kind]), last: err, timer: null };
      this.streaks.set(key, started);
      if (this.opts.endsWhenQuiet) this.schedule(key, started, summaryMs);
      return;
    }
    streak.total++;
    streak.last = err;
    if (streak.kinds.has(kind)) {
      streak.unsaid++;
      // The summary is due an interval after the last line said.
      if (!streak.timer) this.schedule(key, streak, Math.max(0, streak.lastLine + summaryMs - performance.now()));
      return;
    }
    // Another kind of error is news (the server refused, then stopped answering): said once.
    streak.kinds.add(kind);
    this.log[streak.level]({ ...fields, err, failures: streak.total }, msg);
  }

  /** `key` succeeded: a failure under way ends, with one line. Cheap when none is. */
  ok(key: string): void {
    const streak = this.streaks.get(key);
    if (!streak) return;
    this.end(key, streak, 'recovered');
  }

  /** Whether `key` is failing now. */
  failing(key: string): boolean {
    return this.streaks.has(key);
  }

  /** Forgets every failure under way, without a line (the owner stops). */
  stop(): void {
    for (const s of this.streaks.values()) if (s.timer) clearTimeout(s.timer);
    this.streaks.clear();
  }

  private schedule(key: string, streak: Streak, ms: number) {
    streak.timer = setTimeout(() => this.summarize(key, streak), ms);
    streak.timer.unref();
  }

  /** A timer set while there is something to say (or, ending when quiet, while the streak lasts). */
  private summarize(key: string, streak: Streak) {
    streak.timer = null;
    if (this.streaks.get(key) !== streak) return;
    if (streak.unsaid === 0) {
      if (this.opts.endsWhenQuiet) this.end(key, streak, 'quiet');
      return;
    }
    const now = performance.now();
    this.log[streak.level](
      { ...streak.fields, failures: streak.unsaid, seconds: Math.round((now - streak.lastLine) / 1000), failingFor: Math.round((now - streak.started) / 1000), error: brief(streak.last) },
      `${streak.msg}: still failing`,
    );
    streak.unsaid = 0;
    streak.lastLine = now;
    if (this.opts.endsWhenQuiet) this.schedule(key, streak, summaryMs);
  }

  private end(key: string, streak: Streak, how: 'recovered' | 'quiet') {
    if (streak.timer) clearTimeout(streak.timer);
    this.streaks.delete(key);
    const seconds = Math.round((performance.now() - streak.started) / 1000);
    const what = how === 'recovered' ? 'recovered' : `no more for ${summaryMs / 1000} s`;
    this.log.info({ ...streak.fields, failures: streak.total, failingFor: seconds }, `${streak.msg}: ${what}`);
  }
}

/** What makes two errors the same kind: their code, or their message without its numbers. */
function kindOf(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown } | null;
  if (typeof e?.code === 'string' && e.code) return e.code;
  return String(e?.message ?? err).replace(/\d+/g, '#').slice(0, 200);
}

/** An error as a summary gives it: its code and message, without the stack. */
function brief(err: unknown): { message: string; code?: string } {
  const e = err as { code?: unknown; message?: unknown } | null;
  const message = String(e?.message ?? err).slice(0, 500);
  return typeof e?.code === 'string' ? { message, code: e.code } : { message };
}
