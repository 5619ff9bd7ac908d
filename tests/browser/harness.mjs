// Shared pieces of the browser tests: the real `eventbus` binary, a page server, Chromium.
import http from 'node:http';
import { chromium } from 'playwright-core';

import { killBus, startBus as start } from '../bus.mjs';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
/** The bootstrap admin key every test bus starts with (`EVENT_BUS_ADMIN_KEY`). */
export const ADMIN_KEY = 'browser-test-admin-key-0123456789';

/** Starts the bus on `port` (0: any) over `dir`, with this suite's admin key; resolves once it
 * listens. */
export function startBus({ dir, port = 0, env = {} } = {}) {
  return start({ adminKey: ADMIN_KEY, dir, port, env });
}

export { killBus };

/** Publishes one event with `key` (default: the admin key); returns the stored event. */
export async function publish(busUrl, event, key = ADMIN_KEY) {
  const r = await fetch(`${busUrl}/v1/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify(event),
  });
  if (r.status !== 201) throw new Error(`publish answered ${r.status}: ${await r.text()}`);
  return r.json();
}

/**
 * Mints a stream token (`POST /v1/tokens`) with `key` (default: the admin key), as a page's backend
 * does; resolves to { token, expiresAt }.
 */
export async function mintToken(busUrl, body = {}, key = ADMIN_KEY) {
  const r = await fetch(`${busUrl}/v1/tokens`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify(body),
  });
  if (r.status !== 201) throw new Error(`POST /v1/tokens answered ${r.status}: ${await r.text()}`);
  return r.json();
}

/** Serves `html` on a loopback port; resolves to { url, close }. */
export function servePage(html) {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(html);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({ url: `http://127.0.0.1:${server.address().port}/`, close: () => server.close() });
    });
  });
}

/** Launches Debian's headless Chromium. */
export function launchChromium() {
  return chromium.launch({
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
}
