import os from 'node:os';
import { defineConfig } from 'vitest/config';

/**
 * The end-to-end files that run a second time with a PostgreSQL store (issue 14: every semantic the same on both
 * stores): their workspaces get a database of the run's server instead of a SQLite file (test/helpers/cli.ts
 * `makeWorkspace`). Files about store semantics (tenants, providers with their seals, MACs and tamper checks, key
 * rotation, sends, suppressions, domains, concurrent writers, audit), not about provider wire formats; and
 * sendgrid.test.ts, whose personalization batches commit a thousand rows' claims and outcomes at a time (on
 * PostgreSQL one statement each, see src/store/ledger-pg.ts).
 */
export const BOTH_STORES = [
  'test/e2e/tenants.test.ts',
  'test/e2e/security.test.ts',
  'test/e2e/rotation.test.ts',
  'test/e2e/send-test.test.ts',
  'test/e2e/domains.test.ts',
  'test/e2e/concurrency.test.ts',
  'test/e2e/lists.test.ts',
  'test/e2e/bulk-ops.test.ts',
  'test/e2e/sendgrid.test.ts',
];

export default defineConfig({
  test: {
    root: new URL('..', import.meta.url).pathname,
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
    projects: [
      {
        extends: true,
        test: { name: 'sqlite', include: ['test/unit/**/*.test.ts', 'test/integration/**/*.test.ts', 'test/e2e/**/*.test.ts'] },
      },
      {
        extends: true,
        test: { name: 'postgres', include: BOTH_STORES, env: { SWITCHBOARD_TEST_BACKEND: 'postgres' } },
      },
    ],
  },
});
