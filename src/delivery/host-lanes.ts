/*
 * A worker's sends in flight by MX host, delivering directly. The domains whose preferred MX
 * hosts are the same (gmail.com and googlemail.com) take at most `limit` lanes together: more
 * would only wait for those hosts' connections (a slow host holding every lane) while copies for
 * other hosts further on in the batch, idle, wait behind them.
 *
 * And hosts not known to answer quickly (HostSpeeds: new ones, slow ones) take at most
 * `bound.lanes` lanes together, counting every send past DELIVERY_TIMEOUT_SECONDS among them: a
 * tarpit holds a lane up to DELIVERY_DATA_DONE_TIMEOUT_SECONDS (ten minutes), and copies to many
 * tarpit domains, each within its own limit, held every lane of the worker. The other lanes are
 * kept for hosts known to answer quickly. While the bound's lanes all wait past that timeout, the
 * copies for the other hosts not known quick are deferred (retried with backoff, not failed), so
 * that they leave the batch and other mail is claimed in their place.
 */

import type { ClaimedRow } from '../db/outbox.ts';
import type { HostSpeeds } from './host-speeds.ts';

/** A send in flight: what it counts against, when it started, and whether its host was known quick then. */
interface Flight {
  key: string;
  at: number;
  quick: boolean;
}

export interface SlowBound {
  speeds: HostSpeeds;
  /** at most this many sends in flight to hosts not known quick, or past speeds.slowMs */
  lanes: number;
}

export interface Deferral {
  row: ClaimedRow;
  reason: string;
}

export class HostLanes {
  private busy = new Map<string, number>();
  /** each buffered domain's host key, once looked up */
  private hostOf = new Map<string, string>();
  private looking = new Set<string>();
  /** the sends in flight */
  private flights = new Map<ClaimedRow, Flight>();
  /** copies taken out of the buffer to be deferred (the bound's lanes wait on slow hosts) */
  private deferred: Deferral[] = [];
  /** wakes the lanes when a send in flight turns slow (copies may then be deferred) */
  private timer: NodeJS.Timeout | null = null;

  /** `hostKey` never rejects; `changed` is called when a copy may have become free to go */
  constructor(
    private readonly limit: number,
    private readonly hostKey: (domain: string) => Promise<string>,
    private readonly changed: () => void,
    private readonly bound?: SlowBound,
  ) {}

  /** Looks up the hosts of the buffered copies' domains, afresh: MX answers change, and the map stays the buffer's size. */
  lookUp(buffer: ClaimedRow[]) {
    this.hostOf.clear();
    for (const domain of new Set(buffer.map((r) => r.domain))) {
      if (this.looking.has(domain)) continue;
      this.looking.add(domain);
      void this.hostKey(domain).then((key) => {
        this.looking.delete(domain);
        this.hostOf.set(domain, key);
        this.changed();
      });
    }
  }

  /**
   * Takes the first copy of `buffer` whose host has a lane to spare, so a domain's copies keep
   * their order. A domain's copies wait for its lookup (their sends would), others go meanwhile.
   * Copies the bound defers are taken out of the buffer too: deferrals() hands them over.
   */
  take(buffer: ClaimedRow[]): ClaimedRow | undefined {
    const now = performance.now();
    const { held, slow } = this.held(now);
    const bound = this.bound;
    for (let i = 0; i < buffer.length; i++) {
      const r = buffer[i];
      const key = this.hostOf.get(r.domain);
      if (key === undefined || (this.busy.get(key) ?? 0) >= this.limit) continue;
      const quick = !bound || bound.speeds.isQuick(key, now);
      if (!quick && held >= bound!.lanes) {
        // The bound's lanes all wait past the timeout (tarpits, most likely): this copy leaves the
        // batch for a while. Otherwise they are young sends, likely to end soon: it waits.
        if (slow >= bound!.lanes) {
          buffer.splice(i--, 1);
          const seen = bound!.speeds.isSlow(key, now) ? 'were slow to answer lately' : 'are not known to answer quickly';
          this.deferred.push({ row: r, reason: `4.4.5 not tried: ${r.domain}'s mail hosts ${seen}, and ${slow} of this worker's lanes already wait on slow hosts, the most they may take (half); deferred so that other mail goes on` });
        }
        continue;
      }
      buffer.splice(i, 1);
      this.busy.set(key, (this.busy.get(key) ?? 0) + 1);
      this.flights.set(r, { key, at: now, quick });
      return r;
    }
    return undefined;
  }

  /** The copies take() set aside to be deferred, once each. */
  deferrals(): Deferral[] {
    return this.deferred.splice(0);
  }

  done(row: ClaimedRow) {
    const flight = this.flights.get(row);
    if (flight === undefined) return;
    this.flights.delete(row);
    const n = this.busy.get(flight.key)! - 1;
    if (n === 0) this.busy.delete(flight.key);
    else this.busy.set(flight.key, n);
    if (this.bound) {
      const now = performance.now();
      if (now - flight.at > this.bound.speeds.slowMs) this.bound.speeds.sawSlow(flight.key, now);
      else this.bound.speeds.sawQuick(flight.key, now);
    }
    this.changed();
  }

  /**
   * Takes out of `buffer` the copies whose host has every lane it may take held by a send in
   * `stuck` (row ids, past their deadline: worker.ts beat()): they would wait there for ever,
   * their rows renewed by a heartbeat that goes on. Returns them, to be given back to the queue.
   */
  dropBlocked(buffer: ClaimedRow[], stuck: Set<number>): ClaimedRow[] {
    const allStuck = new Map<string, boolean>();
    for (const [row, f] of this.flights) allStuck.set(f.key, (allStuck.get(f.key) ?? true) && stuck.has(row.id));
    const blocked = new Set([...allStuck].filter(([key, all]) => all && (this.busy.get(key) ?? 0) >= this.limit).map(([key]) => key));
    if (blocked.size === 0) return [];
    const dropped: ClaimedRow[] = [];
    for (let i = 0; i < buffer.length; i++) {
      const key = this.hostOf.get(buffer[i].domain);
      if (key !== undefined && blocked.has(key)) dropped.push(...buffer.splice(i--, 1));
    }
    return dropped;
  }

  /** Stops the timer (the round is over). */
  close() {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /**
   * The sends in flight that count against the bound (to hosts not known quick, or past the
   * timeout) and, of them, those past the timeout, whose hosts are noted slow. Sets a timer for
   * the next send to turn slow, so that the lanes look again then.
   */
  private held(now: number): { held: number; slow: number } {
    if (!this.bound) return { held: 0, slow: 0 };
    const { speeds } = this.bound;
    let held = 0;
    let slow = 0;
    let next = Infinity;
    for (const f of this.flights.values()) {
      const late = now - f.at > speeds.slowMs;
      if (late) {
        slow++;
        speeds.sawSlow(f.key, now);
      } else next = Math.min(next, f.at + speeds.slowMs - now);
      if (late || !f.quick) held++;
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (held >= this.bound.lanes && next !== Infinity) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.changed();
      }, next + 1);
      this.timer.unref();
    }
    return { held, slow };
  }
}
