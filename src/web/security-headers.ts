/*
 * The security headers every page carries (Content-Security-Policy and the rest), as helmet
 * writes them. helmet sets them through eleven middlewares, one header each, on every request: a
 * thirtieth of a search's time. The headers depend on the configuration alone, so helmet is run
 * once, here, against a response that records what it does, and each request gets the recorded
 * headers in one step. helmet stays the one place that knows what the headers say.
 */

import type { NextFunction, Request, Response } from 'express';
import helmet, { type HelmetOptions } from 'helmet';

type Step = { set: string; value: string | number | readonly string[] } | { remove: string };

/** What helmet does to a response with these options, replayed on each response. */
export function securityHeaders(options: HelmetOptions) {
  const steps = recordHelmet(options);
  return (_req: Request, res: Response, next: NextFunction) => {
    for (const s of steps) {
      if ('set' in s) res.setHeader(s.set, s.value);
      else res.removeHeader(s.remove);
    }
    next();
  };
}

function recordHelmet(options: HelmetOptions): Step[] {
  const steps: Step[] = [];
  const res = {
    setHeader(name: string, value: string | number | readonly string[]) {
      steps.push({ set: name, value });
      return res;
    },
    removeHeader(name: string) {
      steps.push({ remove: name });
    },
  };
  let done = false;
  helmet(options)({} as never, res as never, (err?: unknown) => {
    if (err) throw err;
    done = true;
  });
  // helmet's middleware is synchronous; if a version made it otherwise, this says so at start.
  if (!done) throw new Error('helmet did not finish synchronously: its headers cannot be recorded once');
  return steps;
}
