/**
 * `work`, or the error `timeout()` makes once the monotonic clock passes `end` (performance.now(): a wall clock that jumps would cut every wait, or none),
 * whichever comes first. The work itself goes on (a socket cannot be taken back); what it does
 * later is ignored, its failure included. Every outside wait that a caller must not hang on uses it.
 */
export function beforeDeadline<T>(work: Promise<T>, end: number, timeout: () => Error): Promise<T> {
  const left = end - performance.now();
  if (left <= 0) {
    work.catch(() => undefined);
    return Promise.reject(timeout());
  }
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    work,
    new Promise<never>((_resolve, reject) => (timer = setTimeout(() => reject(timeout()), left))),
  ]).finally(() => clearTimeout(timer));
}

/** `work` with at most `ms` to finish: past it, an error saying that `what` did not answer in time. */
export function within<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  work.catch(() => undefined);
  return beforeDeadline(work, performance.now() + ms, () => Object.assign(new Error(`${what} did not answer within ${ms / 1000} s`), { code: 'ETIMEOUT' }));
}
