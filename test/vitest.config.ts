import os from 'node:os';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    root: new URL('..', import.meta.url).pathname,
    include: ['test/unit/**/*.test.ts', 'test/integration/**/*.test.ts', 'test/e2e/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // One private PostgreSQL server for the run (test/helpers/postgres.ts); each test file makes its own database.
    globalSetup: ['test/helpers/postgres-global.ts'],
    // Test files mostly wait on the CLI processes they start and on local servers: run serially, the whole
    // suite kept a 2-core machine about 45 % busy (187 s of CPU in 441 s). vitest's default, cores − 1 workers,
    // is a single worker there; three files at a time keep both cores busy. (On a machine shared with other
    // jobs: 6 of the slowest files took 126 s with one worker, 103 s with three, all passing.)
    maxWorkers: Math.max(3, os.availableParallelism()),
    // The JSON report lets .ci/run print a plain "N passed, N failed" closing line.
    reporters: ['default', ['json', { outputFile: 'node_modules/.cache/vitest-report.json' }]],
  },
});
