// The real `eventbus` binary for the CloudEvents SDK tests (found and built by ../eventbus-bin.mjs,
// started as tests/browser/harness.mjs starts it, without the browser parts).
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { BIN, ensureBin } from '../eventbus-bin.mjs';

/** The bootstrap admin key of the test bus. */
export const ADMIN_KEY = 'cloudevents-test-admin-key-0123456789';

/** Starts the bus over a fresh directory; resolves to { proc, url } once it listens. */
export function startBus(env = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'eventbus-ce-'));
  return new Promise((resolve, reject) => {
    ensureBin();
    const proc = spawn(BIN, ['serve'], {
      cwd: dir,
      env: {
        PATH: process.env.PATH,
        PORT: '0',
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
        resolve({ proc, url: m[1] });
      }
    });
    proc.on('exit', (code) => reject(new Error(`the bus exited with ${code}: ${out}`)));
  });
}

/** Kills the bus and waits for it to be gone. */
export function stopBus(bus) {
  return new Promise((resolve) => {
    bus.proc.once('exit', resolve);
    bus.proc.kill('SIGKILL');
  });
}
