import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { defineConfig, type Plugin } from 'vite';

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));

const outDir = process.env.CONSOLE_OUT_DIR ?? here('../../crates/eventbus-server/console');

/** Writes `<file>.gz` beside the script and the style sheet: the server sends them to browsers that accept gzip. */
function gzipAssets(): Plugin {
  return {
    name: 'gzip-assets',
    apply: 'build',
    closeBundle() {
      for (const file of ['console.js', 'console.css']) {
        if (!existsSync(join(outDir, file))) continue;
        writeFileSync(join(outDir, `${file}.gz`), gzipSync(readFileSync(join(outDir, file)), { level: 9 }));
      }
    },
  };
}

// The console is built into the server crate, which embeds these files in the binary
// (crates/eventbus-server/src/http/console.rs): fixed names, one script and one style sheet (and
// their gzip), so that the binary serves the page without Node.js. `npm run check` rebuilds them
// into a temporary folder and compares with the committed ones (check-build.mjs).
export default defineConfig({
  base: '/console/',
  // No React plugin needed: esbuild compiles JSX with the automatic runtime.
  esbuild: { jsx: 'automatic', legalComments: 'none' },
  resolve: {
    // The client from its sources, the same code as the published package.
    alias: [
      { find: /^@situs\/event-bus-client\/react$/, replacement: here('../js/src/react/index.tsx') },
      { find: /^@situs\/event-bus-client$/, replacement: here('../js/src/index.ts') },
    ],
    // ../js has its own copy of React for its tests: one React for the page and the hooks.
    dedupe: ['react', 'react-dom'],
  },
  plugins: [gzipAssets()],
  build: {
    outDir,
    emptyOutDir: true,
    assetsDir: '',
    target: 'es2022',
    modulePreload: false,
    reportCompressedSize: true,
    rollupOptions: {
      // `bundle-size.mjs` builds a baseline page from another entry.
      ...(process.env.CONSOLE_ENTRY ? { input: process.env.CONSOLE_ENTRY } : {}),
      output: {
        entryFileNames: 'console.js',
        chunkFileNames: 'console-[name].js',
        assetFileNames: 'console[extname]',
        inlineDynamicImports: true,
      },
    },
  },
  server: {
    // `npm run dev`: the page from Vite, the API from a running bus.
    proxy: Object.fromEntries(
      ['/v1', '/health', '/openapi.json'].map((p) => [p, process.env.EVENT_BUS_URL ?? 'http://127.0.0.1:3002']),
    ),
  },
});
