import { defineConfig } from 'vite';

export default defineConfig({
  // No React plugin needed: esbuild compiles JSX with the automatic runtime.
  esbuild: { jsx: 'automatic' },
  // The client package is linked from ../../clients/js, which has its own dev copy of React:
  // use one React for the page and the hooks.
  resolve: { dedupe: ['react', 'react-dom'] },
});
