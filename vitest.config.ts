import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    globalSetup: ['./test/global-setup.ts'],
    setupFiles: ['./test/setup-log.ts'],
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    maxWorkers: 2,
    // Files share a worker process: loading node_modules once per worker instead of once per file
    // saves about two minutes of ten. test/setup-log.ts puts back the process-wide state a file may
    // change (environment, configuration, DNS) before the next one.
    isolate: false,
    env: { LOG_LEVEL: process.env.LOG_LEVEL ?? 'silent' },
  },
});
