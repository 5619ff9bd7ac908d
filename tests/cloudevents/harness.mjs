// The real `eventbus` binary for the CloudEvents SDK tests (as tests/browser/harness.mjs starts
// it, without the browser parts).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '../..');
const EXE = process.platform === 'win32' ? 'eventbus.exe' : 'eventbus';
const targetDir = path.resolve(root, process.env.CARGO_TARGET_DIR || 'target');

/**
 * The binary: `EVENTBUS_BIN`, else `<target>/release/eventbus` when it exists, else
 * `<target>/debug/eventbus` (built with `cargo build -p eventbus-server` when missing).
 */
export const BIN = process.env.EVENTBUS_BIN
  ? path.resolve(process.env.EVENTBUS_BIN)
  : [path.join(targetDir, 'release', EXE), path.join(targetDir, 'debug', EXE)].find(existsSync) ??
    path.join(targetDir, 'debug', EXE);

function ensureBin() {
  if (existsSync(BIN)) return;
  if (process.env.EVENTBUS_BIN) throw new Error(`EVENTBUS_BIN is ${BIN}, which does not exist`);
  const build = spawnSync('cargo', ['build', '-p', 'eventbus-server'], { cwd: root, stdio: 'inherit', env: process.env });
  if (build.status !== 0 || !existsSync(BIN)) throw new Error(`\`cargo build -p eventbus-server\` did not produce ${BIN}`);
}

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
