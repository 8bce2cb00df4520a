import type { Writable } from 'node:stream';

/**
 * Waits until `out` will take more (its 'drain'), or is gone: closed (a download cancelled, a
 * reader that stalled past the web server's deadline) or failed. A wait on 'drain' alone never
 * ended for a response whose socket was destroyed, and held its page of rows for good; the caller
 * looks at `out.destroyed` after it.
 */
export function drained(out: Writable): Promise<void> {
  if (out.destroyed) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      out.off('drain', onDrain);
      out.off('close', onDrain);
      out.off('error', done);
      if (err) reject(err);
      else resolve();
    };
    const onDrain = () => done();
    out.on('drain', onDrain);
    out.on('close', onDrain);
    out.on('error', done);
  });
}
