// Shared pieces of the browser tests: the real `eventbus` binary, a page server, Chromium.
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

import { BIN, ensureBin } from '../eventbus-bin.mjs';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
/** The bootstrap admin key every test bus starts with (`EVENT_BUS_ADMIN_KEY`). */
export const ADMIN_KEY = 'browser-test-admin-key-0123456789';

/** Starts the bus on `port` (0: any) over `dir`; resolves once it listens. */
export function startBus({ dir = mkdtempSync(path.join(tmpdir(), 'eventbus-')), port = 0, env = {} } = {}) {
  return new Promise((resolve, reject) => {
    ensureBin();
    const proc = spawn(BIN, ['serve'], {
      cwd: dir,
      env: {
        PATH: process.env.PATH,
        PORT: String(port),
        HOST: '127.0.0.1',
        EVENT_STORE_URL: `sqlite://${path.join(dir, 'eventbus.db')}`,
        RUST_LOG: 'warn',
        EVENT_BUS_ADMIN_KEY: ADMIN_KEY,
        ...env,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    const timer = setTimeout(() => reject(new Error(`the bus did not start: ${out}`)), 30_000);
    proc.stdout.on('data', (chunk) => {
      out += chunk;
      const m = out.match(/eventbus listening on (http:\/\/[\d.:]+)/);
      if (m) {
        clearTimeout(timer);
        resolve({ proc, url: m[1], dir, port: Number(new URL(m[1]).port) });
      }
    });
    proc.on('exit', (code) => reject(new Error(`the bus exited with ${code}: ${out}`)));
  });
}

/** Kills the bus with SIGKILL and waits for it to be gone. */
export function killBus(bus) {
  return new Promise((resolve) => {
    bus.proc.once('exit', resolve);
    bus.proc.kill('SIGKILL');
  });
}

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
