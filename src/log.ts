import { pino } from 'pino';

/**
 * The one logger. Structured JSON on stdout; children carry {session}, {messageId} or
 * {outboxId, attempt} so a single grep follows one message end to end.
 * Its level is set from LOG_LEVEL by config.ts once the configuration has been validated.
 */
export const log = pino({
  level: 'info',
  base: { app: 'listkeeper' },
  timestamp: pino.stdTimeFunctions.isoTime,
});

export type Logger = pino.Logger;
