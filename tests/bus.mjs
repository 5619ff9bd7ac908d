// The real `eventbus` binary for the JavaScript test suites under tests/ (browser, cloudevents):
// where it is, building it when missing, starting it over a fresh directory and killing it.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const EXE = process.platform === 'win32' ? 'eventbus.exe' : 'eventbus';
/** Cargo's target directory, as `cargo build` run from the repository root uses it. */
const targetDir = path.resolve(root, process.env.CARGO_TARGET_DIR || 'target');

/**
 * The `eventbus` binary the tests start: `EVENTBUS_BIN` (relative to the working directory), else
 * `<target>/release/eventbus` when it exists, else `<target>/debug/eventbus`, where `<target>` is
 * `$CARGO_TARGET_DIR` (relative to the repository root) or `<repo>/target`.
 */
export const BIN = process.env.EVENTBUS_BIN
  ? path.resolve(process.env.EVENTBUS_BIN)
  : [path.join(targetDir, 'release', EXE), path.join(targetDir, 'debug', EXE)].find(existsSync) ??
    path.join(targetDir, 'debug', EXE);

/**
 * Builds the binary with `cargo build -p eventbus-server` (from the repository root, inheriting
 * `CARGO_TARGET_DIR`) when it does not exist; a missing `EVENTBUS_BIN` is an error, never built.
 * Test files run one at a time and cargo locks its target directory, so this builds at most once.
 */
function ensureBin() {
  if (existsSync(BIN)) return;
  if (process.env.EVENTBUS_BIN) throw new Error(`EVENTBUS_BIN is ${BIN}, which does not exist`);
  console.log(`no eventbus binary under ${targetDir}: building it with \`cargo build -p eventbus-server\``);
  const build = spawnSync('cargo', ['build', '-p', 'eventbus-server'], { cwd: root, stdio: 'inherit', env: process.env });
  if (build.error) throw new Error(`cannot run cargo (${build.error.message}): build the server or set EVENTBUS_BIN`);
  if (build.status !== 0 || !existsSync(BIN)) throw new Error(`\`cargo build -p eventbus-server\` did not produce ${BIN}`);
}

/**
 * Starts the bus on `port` (0: any) over `dir`, with `adminKey` as its bootstrap admin key and
 * `env` on top; resolves to { proc, url, dir, port } once it listens.
 */
export function startBus({ adminKey, dir = mkdtempSync(path.join(tmpdir(), 'eventbus-')), port = 0, env = {} }) {
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
        EVENT_BUS_ADMIN_KEY: adminKey,
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
