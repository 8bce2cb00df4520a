/*
 * What a worker has lately seen of each MX host's answers, delivering directly: quick (a send
 * ended within DELIVERY_TIMEOUT_SECONDS) or slow (a send went on past it: a receiver scanning the
 * message, or a tarpit holding the reply to the final dot for DELIVERY_DATA_DONE_TIMEOUT_SECONDS).
 * HostLanes keeps lanes for the quick ones with it (host-lanes.ts). Kept for the worker's life,
 * each verdict for HOST_SPEED_MEMORY_MS.
 */

/** How long a host's last verdict is remembered: afterwards it is a host the worker does not know. */
export const HOST_SPEED_MEMORY_MS = 10 * 60_000;

export class HostSpeeds {
  private quick = new Map<string, number>();
  private slow = new Map<string, number>();
  private pruned = performance.now();

  /** `slowMs`: a send in flight longer than this is slow (DELIVERY_TIMEOUT_SECONDS) */
  constructor(readonly slowMs: number, private readonly memoryMs = HOST_SPEED_MEMORY_MS) {}

  sawQuick(key: string, now: number) {
    this.slow.delete(key);
    this.quick.set(key, now);
    this.prune(now);
  }

  sawSlow(key: string, now: number) {
    this.quick.delete(key);
    this.slow.set(key, now);
    this.prune(now);
  }

  /** A send to the host ended within slowMs lately, and none has been slow since. */
  isQuick(key: string, now: number): boolean {
    const at = this.quick.get(key);
    return at !== undefined && now - at < this.memoryMs;
  }

  isSlow(key: string, now: number): boolean {
    const at = this.slow.get(key);
    return at !== undefined && now - at < this.memoryMs;
  }

  /** Forgets verdicts older than the memory, once per memory: the maps stay the size of the hosts seen lately. */
  private prune(now: number) {
    if (now - this.pruned < this.memoryMs) return;
    this.pruned = now;
    for (const map of [this.quick, this.slow]) for (const [key, at] of map) if (now - at >= this.memoryMs) map.delete(key);
  }
}
