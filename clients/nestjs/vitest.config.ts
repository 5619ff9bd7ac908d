import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Builds the bus binary once when there is none (the JS client's helper, shared).
    globalSetup: ['../js/test/global-setup.ts'],
    environment: 'node',
    // Tests start real bus and application processes: one file at a time keeps a 2-core machine calm.
    fileParallelism: false,
    testTimeout: 90_000,
    hookTimeout: 60_000,
  },
});
