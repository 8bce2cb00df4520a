/*
 * The one logger. Structured JSON; children carry {session}, {messageId} or {outboxId, attempt}
 * so a single grep follows one message end to end. Its level is set from LOG_LEVEL by config.ts.
 * `serve` logs to stdout; other commands log to stderr (useCliLogging), keeping stdout for their
 * output, e.g. JSON that scripts parse.
 *
 * Secrets never reach a log line: fields that name a password are replaced by ***, fields that
 * hold a URL keep the URL with its password masked (redactUrl). Code that logs a URL under
 * another name calls redactUrl itself.
 */

import { pino } from 'pino';

let toStderr = false;
const destination = { write: (line: string) => (toStderr ? process.stderr : process.stdout).write(line) };

const URL_FIELDS = ['relay', 'relayUrl', 'databaseUrl', 'connectionString', 'spamCheckUrl'];
const SECRET_FIELDS = ['password', 'pass', 'auth', 'clientSecret', 'bindPassword'];
// Request paths: some carry a token that acts as a password (one-click unsubscribe, login links).
const PATH_FIELDS = ['url'];

export const log = pino(
  {
    level: 'info',
    base: { app: 'listkeeper' },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: {
      paths: [...URL_FIELDS, ...SECRET_FIELDS, ...PATH_FIELDS].flatMap((f) => [f, `*.${f}`]),
      censor: (value: unknown, path: string[]) => {
        const field = path[path.length - 1];
        if (typeof value === 'string' && URL_FIELDS.includes(field)) return redactUrl(value);
        if (typeof value === 'string' && PATH_FIELDS.includes(field)) return redactPath(value);
        return '***';
      },
    },
  },
  destination,
);

export type Logger = pino.Logger;

const LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal']);
const nothing = () => undefined;

/**
 * A child logger that pino makes only when a line is written through it. Every post gets one
 * (`{session}`, then `{messageId}`), and most never log past the level set: pino's child() with
 * redaction cost 8 KB and about 10 µs each, on the listener's busiest path. Lines written through
 * it are exactly those of `parent.child(bindings)`.
 */
export function lazyChild(parent: Logger, bindings: pino.Bindings): Logger {
  let made: Logger | undefined;
  const real = () => (made ??= parent.child(bindings));
  return new Proxy(parent, {
    get(_target, prop) {
      if (made === undefined) {
        if (prop === 'child') return (more: pino.Bindings, options?: pino.ChildLoggerOptions) => (options ? real().child(more, options) : lazyChild(parent, { ...bindings, ...more }));
        if (prop === 'bindings') return () => ({ ...parent.bindings(), ...bindings });
        // A child has its parent's level until it is given its own.
        if (prop === 'isLevelEnabled') return (level: string) => parent.isLevelEnabled(level);
        if (prop === 'level') return parent.level;
        if (typeof prop === 'string' && LEVELS.has(prop) && !parent.isLevelEnabled(prop)) return nothing;
      }
      const child = real();
      const value: unknown = Reflect.get(child, prop, child);
      return typeof value === 'function' ? value.bind(child) : value;
    },
  });
}

/** For one-shot commands: logs go to stderr, and only warnings unless LOG_LEVEL asked for more. */
export function useCliLogging(levelWasSet: boolean): void {
  toStderr = true;
  if (!levelWasSet) log.level = 'warn';
}

const SECRET_PARAM = /^(password|pass|sslpassword|secret|token)$/i;

/**
 * A URL fit for printing: its password (`user:PASSWORD@`, `?password=`) shows as ***. Works on
 * strings that are not valid URLs too (a configuration error echoes what was typed).
 */
export function redactUrl(value: string): string {
  try {
    const u = new URL(value);
    // `app:PASSWORD@db/x` (the scheme forgotten) or `postgres:app:PASSWORD@db/x` parse too, as a
    // scheme and an opaque path with no password in it: an @ without a host is a mistyped URL.
    if (!u.host && value.includes('@')) return maskLoosely(value);
    let changed = false;
    if (u.password) {
      u.password = '***';
      changed = true;
    }
    for (const key of [...u.searchParams.keys()]) {
      if (SECRET_PARAM.test(key)) {
        u.searchParams.set(key, '***');
        changed = true;
      }
    }
    return changed ? u.toString() : value;
  } catch {
    return maskLoosely(value);
  }
}

/**
 * A request path with the tokens of mailed links masked: /u/***, /confirm/***, /login/link/***;
 * and the query of the OpenID callback (its one-time code and state) as ?***.
 */
export function redactPath(path: string): string {
  return path.replace(/^(\/(?:u|confirm|login\/link|login\/reset))\/[^/?#]+/, '$1/***').replace(/^(\/login\/oidc\/callback)\?.*/, '$1?***');
}

/** Free text (an error message, a reason) with the password of any URL in it masked. */
export function redactSecrets(text: string): string {
  return text
    .replace(/\b([a-z][a-z0-9+.-]*:\/\/[^\s:@/]*):[^\s@]*@/gi, '$1:***@')
    .replace(/([?&](?:password|pass|sslpassword|secret|token)=)[^&\s]*/gi, '$1***');
}

// Something URL-like that does not parse (a typo, an unencoded / in the password): everything
// between the user name and the last @ is taken for a password.
function maskLoosely(value: string): string {
  let out = value.replace(/([?&](?:password|pass|sslpassword|secret|token)=)[^&\s]*/gi, '$1***');
  const at = out.lastIndexOf('@');
  if (at > 0) {
    const slashes = out.lastIndexOf('//', at);
    const start = slashes >= 0 ? slashes + 2 : 0;
    const colon = out.indexOf(':', start);
    if (colon >= 0 && colon < at) out = `${out.slice(0, colon + 1)}***${out.slice(at)}`;
  }
  return out;
}
