// End to end in real headless Chromium: the example React page (built with Vite), served with the
// example's application backend (which mints the page's stream tokens with its own API key),
// shows events published through the Node client, and after the bus is killed and restarted it
// shows the events published while it was away — each once, in order. With a backend key the bus
// refuses, the page says why it cannot connect and why its publish failed.
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventBusClient } from '../src/index.js';
import { createBackend } from '../../../examples/react-live-feed/backend.js';
import { ADMIN_KEY, createKey, killBus, restartBus, startBus, tempDir, waitFor, type Bus } from './helpers/bus.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const pkg = path.resolve(here, '..');
const example = path.resolve(pkg, '../../examples/react-live-feed');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
// Outside CI a machine without Chromium skips this file; in CI it must run.
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && process.env.CI === 'true') throw new Error(`the browser test needs ${CHROMIUM}`);

async function buildExample(): Promise<string> {
  const outDir = tempDir('react-live-feed-');
  const src = (p: string) => path.join(pkg, 'src', p);
  const dep = (p: string) => path.join(pkg, 'node_modules', p);
  await build({
    root: example,
    configFile: false,
    logLevel: 'warn',
    esbuild: { jsx: 'automatic' },
    resolve: {
      alias: [
        { find: /^@situs\/event-bus-client\/react$/, replacement: src('react/index.tsx') },
        { find: /^@situs\/event-bus-client$/, replacement: src('index.ts') },
        { find: /^react$/, replacement: dep('react') },
        { find: /^react\/(.*)$/, replacement: `${dep('react')}/$1` },
        { find: /^react-dom$/, replacement: dep('react-dom') },
        { find: /^react-dom\/(.*)$/, replacement: `${dep('react-dom')}/$1` },
      ],
    },
    build: { outDir, emptyOutDir: true, minify: false },
  });
  return outDir;
}

/** Serves the built page and, under `/api`, the example's backend. */
function serveSite(dir: string, backend: ReturnType<typeof createBackend>): Promise<{ url: string; close: () => void }> {
  const types: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css' };
  const server = http.createServer((req, res) => {
    const pathname = new URL(req.url ?? '/', 'http://x').pathname;
    if (pathname.startsWith('/api/')) {
      void backend(req, res);
      return;
    }
    const file = path.join(dir, pathname === '/' ? 'index.html' : path.normalize(pathname));
    if (!file.startsWith(dir) || !existsSync(file)) {
      res.writeHead(404);
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': `${types[path.extname(file)] ?? 'application/octet-stream'}; charset=utf-8` });
    res.end(readFileSync(file));
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      resolve({ url: `http://127.0.0.1:${port}/`, close: () => server.close() });
    });
  });
}

const feed = (page: Page) =>
  page.$$eval('#feed li', (lis) => lis.map((li) => ({ seq: Number(li.getAttribute('data-seq')), n: Number(li.getAttribute('data-n')) })).reverse());

describe.skipIf(!haveChromium)('the React example page in Chromium', () => {
  let bus: Bus;
  let browser: Browser;
  let dist: string;
  let site: { url: string; close: () => void };
  const sites: { close: () => void }[] = [];
  let publisher: EventBusClient;
  const tokenRequests: string[] = [];

  beforeAll(async () => {
    const [built, b] = await Promise.all([buildExample(), startBus()]);
    dist = built;
    bus = b;
    publisher = new EventBusClient({ url: bus.url, apiKey: ADMIN_KEY });
    // The backend's own key: enough for the page's tokens and the test button, nothing more.
    const apiKey = await createKey(bus, { name: 'live feed backend', permissions: ['subscribe', 'publish'], types: ['project.*'] });
    const backend = createBackend({ busUrl: bus.url, apiKey });
    site = await serveSite(dist, (req, res, next) => {
      if (req.url?.startsWith('/api/stream-token')) tokenRequests.push(req.url);
      return backend(req, res, next);
    });
    sites.push(site);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    for (const s of sites) s.close();
    if (bus) await killBus(bus);
  });

  for (const transport of ['fetch', 'eventsource'] as const) {
    it(`renders published events and resumes after a bus restart (${transport} transport)`, async () => {
      const projectId = `e2e-${transport}`;
      const client = publisher;
      const tokensBefore = tokenRequests.length;
      const page = await browser.newPage();
      const pageErrors: string[] = [];
      page.on('pageerror', (e) => pageErrors.push(String(e)));
      await page.goto(`${site.url}?bus=${encodeURIComponent(bus.url)}&project=${projectId}&transport=${transport}`);
      await page.waitForSelector('#status[data-status=open]', { timeout: 20_000 });

      await client.publish({ type: 'project.updated', projectId: 'someone-else', payload: { n: 98, name: 'not this project' } });
      for (let n = 1; n <= 3; n++) await client.publish({ type: 'project.updated', projectId, payload: { projectId, n, name: `name ${n}` } });
      await client.publish({ type: 'project.updated', projectId: 'someone-else', payload: { n: 99, name: 'not this project' } });
      await page.waitForFunction(() => document.querySelectorAll('#feed li').length >= 3, null, { timeout: 20_000 });
      expect((await feed(page)).map((e) => e.n)).toEqual([1, 2, 3]);
      // "Latest name" is this project's (its hook shares the feed's stream, so it is up to date).
      expect(await page.textContent('#latest-name')).toBe('name 3');

      // kill -9 and restart on the same port and data. The page's stream requests are refused
      // (where Chromium lets the test intercept them) until the events of the outage are
      // published, so it gets them by resuming.
      const streamRequests: { lastEventId: string | null; token: string | null }[] = [];
      page.on('request', (r) => {
        const url = new URL(r.url());
        // The project's stream (the feed's and "Latest name"'s).
        if (url.pathname !== '/v1/stream' || url.searchParams.get('projectId') !== projectId) return;
        streamRequests.push({ lastEventId: r.headers()['last-event-id'] ?? url.searchParams.get('lastEventId'), token: url.searchParams.get('token') });
      });
      await page.route('**/v1/stream**', (route) => route.abort());
      await killBus(bus);
      await page.waitForSelector('#status[data-status=reconnecting]', { timeout: 20_000 });
      // The page says why it is reconnecting.
      await page.waitForSelector('#connection-error', { timeout: 20_000 });
      bus = await restartBus(bus);
      for (let n = 4; n <= 6; n++) await client.publish({ type: 'project.updated', projectId, payload: { projectId, n } });
      const lastBefore = (await feed(page)).at(-1)!.seq;
      await page.unroute('**/v1/stream**');
      await page.waitForFunction(() => document.querySelectorAll('#feed li').length >= 6, null, { timeout: 30_000 });
      await page.waitForSelector('#status[data-status=open]', { timeout: 20_000 });
      await client.publish({ type: 'project.updated', projectId, payload: { projectId, n: 7, name: 'after restart' } });
      await page.waitForFunction(() => document.querySelectorAll('#feed li').length >= 7, null, { timeout: 20_000 });
      await page.waitForFunction(() => document.querySelector('#latest-name')?.textContent === 'after restart', null, { timeout: 20_000 });

      const shown = await feed(page);
      expect(shown.map((e) => e.n)).toEqual([1, 2, 3, 4, 5, 6, 7]);
      expect(new Set(shown.map((e) => e.seq)).size).toBe(7);
      expect(pageErrors).toEqual([]);
      // The page got its stream tokens from the backend (at least one per stream and reconnection);
      // its URLs carried one, never a key.
      expect(tokenRequests.length - tokensBefore).toBeGreaterThanOrEqual(2);
      expect(await page.$('#stream-error')).toBeNull();
      expect(await page.$('#connection-error')).toBeNull();
      expect(streamRequests.every((r) => r.token !== null && r.token.split('.').length === 3)).toBe(true);
      // Every reconnection resumed from the last event shown before the outage.
      expect(streamRequests.length).toBeGreaterThan(0);
      expect(streamRequests.map((r) => r.lastEventId)).toEqual(streamRequests.map(() => String(lastBefore)));

      // The page's own publish button goes through the backend (`POST /api/publish`).
      await page.click('#publish');
      await page.waitForFunction(() => document.querySelectorAll('#feed li').length >= 8, null, { timeout: 20_000 });
      expect(await page.$('#publish-error')).toBeNull();
      await page.close();
    });
  }

  // Regression: with a key the bus refuses, the page said "reconnecting" forever without saying
  // why, and its publish button failed silently.
  for (const { what, key, status } of [
    { what: 'a wrong key', key: async () => 'ebk_not_a_key', status: 401 },
    { what: 'a key without `subscribe`', key: () => createKey(bus, { permissions: ['publish'], types: ['project.*'] }), status: 403 },
  ]) {
    it(`with ${what}, the page shows why it cannot connect, and why a publish fails`, async () => {
      const backend = createBackend({ busUrl: bus.url, apiKey: await key() });
      const badSite = await serveSite(dist, backend);
      sites.push(badSite);
      const page = await browser.newPage();
      const pageErrors: string[] = [];
      page.on('pageerror', (e) => pageErrors.push(String(e)));
      const projectId = `e2e-refused-${status}`;
      await page.goto(`${badSite.url}?bus=${encodeURIComponent(bus.url)}&project=${projectId}`);
      await page.waitForSelector('#connection-error', { timeout: 20_000 });
      const shown = await page.textContent('#connection-error');
      expect(shown).toContain('the backend could not get a stream token: the bus answered ' + status);
      expect(await page.getAttribute('#status', 'data-status')).not.toBe('open');

      await page.click('#publish');
      if (status === 401) {
        await page.waitForSelector('#publish-error', { timeout: 20_000 });
        expect(await page.textContent('#publish-error')).toContain('the backend could not publish: the bus answered 401');
      } else {
        // This key may publish: the button works, only the stream is refused.
        await waitFor(async () => {
          const first = await publisher.query({ type: 'project.updated', projectId }).next();
          return !first.done && first.value.events.length > 0;
        }, 'the published update');
        expect(await page.$('#publish-error')).toBeNull();
      }
      expect(await page.getAttribute('#status', 'data-status')).not.toBe('open');
      expect(pageErrors).toEqual([]);
      await page.close();
    });
  }
});
