/*
 * A worker's sends in flight by MX host, delivering directly. The domains whose preferred MX
 * hosts are the same (gmail.com and googlemail.com) take at most `limit` lanes together: more
 * would only wait for those hosts' connections (a slow host holding every lane) while copies for
 * other hosts further on in the batch, idle, wait behind them.
 */

import type { ClaimedRow } from '../db/outbox.ts';

export class HostLanes {
  private busy = new Map<string, number>();
  /** each buffered domain's host key, once looked up */
  private hostOf = new Map<string, string>();
  private looking = new Set<string>();
  /** the key each send in flight counts against */
  private counted = new Map<ClaimedRow, string>();

  /** `hostKey` never rejects; `changed` is called when a copy may have become free to go */
  constructor(private readonly limit: number, private readonly hostKey: (domain: string) => Promise<string>, private readonly changed: () => void) {}

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
   */
  take(buffer: ClaimedRow[]): ClaimedRow | undefined {
    const i = buffer.findIndex((r) => {
      const key = this.hostOf.get(r.domain);
      return key !== undefined && (this.busy.get(key) ?? 0) < this.limit;
    });
    if (i < 0) return undefined;
    const [row] = buffer.splice(i, 1);
    const key = this.hostOf.get(row.domain)!;
    this.busy.set(key, (this.busy.get(key) ?? 0) + 1);
    this.counted.set(row, key);
    return row;
  }

  done(row: ClaimedRow) {
    const key = this.counted.get(row);
    if (key === undefined) return;
    this.counted.delete(row);
    const n = this.busy.get(key)! - 1;
    if (n === 0) this.busy.delete(key);
    else this.busy.set(key, n);
    this.changed();
  }
}
