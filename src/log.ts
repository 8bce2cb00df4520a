import { pino } from 'pino';

/**
 * The one logger. Structured JSON; children carry {session}, {messageId} or {outboxId, attempt}
 * so a single grep follows one message end to end. Its level is set from LOG_LEVEL by config.ts.
 * `serve` logs to stdout; other commands log to stderr (useCliLogging), keeping stdout for their
 * output, e.g. JSON that scripts parse.
 */
let toStderr = false;
const destination = { write: (line: string) => (toStderr ? process.stderr : process.stdout).write(line) };

export const log = pino({ level: 'info', base: { app: 'listkeeper' }, timestamp: pino.stdTimeFunctions.isoTime }, destination);

export type Logger = pino.Logger;

/** For one-shot commands: logs go to stderr, and only warnings unless LOG_LEVEL asked for more. */
export function useCliLogging(levelWasSet: boolean): void {
  toStderr = true;
  if (!levelWasSet) log.level = 'warn';
}
