import os from 'node:os';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    globalSetup: ['./test/global-setup.ts'],
    setupFiles: ['./test/setup-log.ts'],
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // One file more than the cores: most files spend much of their time waiting on a child process
    // (a browser, a server, the CLI) or a deadline. On a 2-core machine 3 workers ran the suite in
    // 645 s where 2 took 718 s, and kept both cores busy (vmstat: 1-2% idle).
    maxWorkers: os.availableParallelism() + 1,
    // Files share a worker process: loading node_modules once per worker instead of once per file
    // saves about two minutes of ten. test/setup-log.ts puts back the process-wide state a file may
    // change (environment, configuration, DNS) before the next one.
    isolate: false,
    env: { LOG_LEVEL: process.env.LOG_LEVEL ?? 'silent' },
  },
});
