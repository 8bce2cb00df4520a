/**
 * Bytes of message data the ingest listener may hold at once, across all sessions. A session
 * reserves what it buffers beyond its first megabyte, chunk by chunk, and waits (its socket unread,
 * so TCP holds the sender back) while the budget is spent, at most `waitMs`. The budget bounds
 * memory; the bounded wait means a session that trickles its data slowly holds only what it has
 * sent, never the whole listener (a single "one large message at a time" gate let one slow client
 * stall every other large message).
 */
export class MemoryBudget {
  private used = 0;
  private waiters: { bytes: number; own: number; wake: () => void }[] = [];

  constructor(readonly limit: number) {}

  get inUse(): number {
    return this.used;
  }

  /**
   * Takes `bytes` more of the budget for a holder that has `own` bytes of it already, waiting in
   * turn up to `waitMs`; false when the wait ran out.
   */
  async reserve(bytes: number, own: number, waitMs: number): Promise<boolean> {
    if (this.waiters.length === 0 && this.fits(bytes, own)) {
      this.used += bytes;
      return true;
    }
    return new Promise<boolean>((resolve) => {
      const waiter = {
        bytes,
        own,
        wake: () => {
          clearTimeout(timer);
          this.used += bytes;
          resolve(true);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        this.grant(); // the next in line may fit now that this one gave up
        resolve(false);
      }, waitMs);
      this.waiters.push(waiter);
    });
  }

  release(bytes: number): void {
    if (bytes <= 0) return;
    this.used = Math.max(0, this.used - bytes);
    this.grant();
  }

  /**
   * A holder alone in the budget may go past it: one message larger than the budget (up to the
   * size limit) still gets through, on its own.
   */
  private fits(bytes: number, own: number): boolean {
    return this.used + bytes <= this.limit || this.used === own;
  }

  private grant() {
    while (this.waiters.length > 0 && this.fits(this.waiters[0].bytes, this.waiters[0].own)) this.waiters.shift()!.wake();
  }
}
