import { log } from '../src/log.ts';

// Test processes never call config(), which is what sets the level: keep logs quiet unless asked.
log.level = process.env.LOG_LEVEL ?? 'silent';
