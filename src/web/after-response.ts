/*
 * Work that must not shape the answer: it starts once the response has been sent (or the client
 * went away), so the time an answer takes says nothing about what the work found. Used where the
 * answer must be the same whether or not an address is known (login links, password resets).
 * Failures are logged; WebServer.stop() waits for work in flight, so none is lost at shutdown.
 */

import type { Response } from 'express';
import { log } from '../log.ts';
import { afterResponseWork } from './web-metrics.ts';

const pending = new Set<Promise<void>>();

export function afterResponse(res: Response, what: string, work: () => Promise<void>): void {
  let started = false;
  const start = () => {
    if (started) return;
    started = true;
    const run = work().then(
      () => void afterResponseWork.inc({ result: 'ok' }),
      (err) => {
        afterResponseWork.inc({ result: 'failed' });
        log.error({ err }, `${what} failed after the response was sent`);
      },
    );
    pending.add(run);
    void run.finally(() => pending.delete(run));
  };
  if (res.writableFinished) return start();
  res.once('finish', start);
  res.once('close', start);
}

/** Resolves when the work started so far has finished. */
export async function settleAfterResponse(): Promise<void> {
  while (pending.size > 0) await Promise.all([...pending]);
}
