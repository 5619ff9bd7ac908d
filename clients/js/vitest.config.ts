import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const src = (p: string) => fileURLToPath(new URL(`./src/${p}`, import.meta.url));
const dep = (p: string) => fileURLToPath(new URL(`./node_modules/${p}`, import.meta.url));

export default defineConfig({
  esbuild: { jsx: 'automatic' },
  resolve: {
    // The examples import the package by name; in tests that is this source tree.
    alias: [
      { find: /^@situs\/event-bus-client\/react$/, replacement: src('react/index.tsx') },
      { find: /^@situs\/event-bus-client\/legacy$/, replacement: src('legacy/index.ts') },
      { find: /^@situs\/event-bus-client$/, replacement: src('index.ts') },
      { find: /^react$/, replacement: dep('react') },
      { find: /^react-dom$/, replacement: dep('react-dom') },
    ],
  },
  test: {
    include: ['test/**/*.test.{ts,tsx}'],
    // Builds the bus binary once when there is none (test/helpers/binary.ts says where it is looked
    // for); generates the Prisma client of the outbox tests.
    globalSetup: ['test/global-setup.ts', 'test/prisma-setup.ts'],
    environment: 'node',
    // Tests start real bus processes and a browser: one file at a time keeps a 2-core machine calm.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
