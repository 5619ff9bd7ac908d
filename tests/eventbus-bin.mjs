// The real `eventbus` binary for the JavaScript test suites under tests/ (browser, cloudevents).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
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
export function ensureBin() {
  if (existsSync(BIN)) return;
  if (process.env.EVENTBUS_BIN) throw new Error(`EVENTBUS_BIN is ${BIN}, which does not exist`);
  console.log(`no eventbus binary under ${targetDir}: building it with \`cargo build -p eventbus-server\``);
  const build = spawnSync('cargo', ['build', '-p', 'eventbus-server'], { cwd: root, stdio: 'inherit', env: process.env });
  if (build.error) throw new Error(`cannot run cargo (${build.error.message}): build the server or set EVENTBUS_BIN`);
  if (build.status !== 0 || !existsSync(BIN)) throw new Error(`\`cargo build -p eventbus-server\` did not produce ${BIN}`);
}
