import { defineConfig } from 'vite';
import { createBackend } from './backend.js';

// The dev server doubles as the application backend (`/api/*`, see backend.ts), with the key from
// EVENT_BUS_API_KEY; the page itself never sees it.
const busUrl = process.env.EVENT_BUS_URL ?? 'http://127.0.0.1:3002';
const apiKey = process.env.EVENT_BUS_API_KEY;

export default defineConfig({
  // No React plugin needed: esbuild compiles JSX with the automatic runtime.
  esbuild: { jsx: 'automatic' },
  // The client package is linked from ../../clients/js, which has its own dev copy of React:
  // use one React for the page and the hooks.
  resolve: { dedupe: ['react', 'react-dom'] },
  plugins: [
    {
      name: 'app-backend',
      configureServer(server) {
        if (!apiKey) {
          server.config.logger.warn('EVENT_BUS_API_KEY is not set: /api/stream-token and /api/publish will fail');
        }
        const backend = createBackend({ busUrl, apiKey: apiKey ?? '' });
        server.middlewares.use((req, res, next) => void backend(req, res, next));
      },
    },
  ],
});
