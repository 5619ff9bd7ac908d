// Where the tests find the real `eventbus` binary, and building it when there is none.
//
// `EVENTBUS_BIN` names it (relative to the working directory); otherwise it is
// `<target>/release/eventbus` when that exists, else `<target>/debug/eventbus`, where `<target>` is
// `$CARGO_TARGET_DIR` (relative to the repository root, where cargo runs) or `<repo>/target`.
// This module imports nothing from vitest: the global setup (`test/global-setup.ts`) uses it too.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (clients/js/test/helpers → four levels up). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');

const EXE = process.platform === 'win32' ? 'eventbus.exe' : 'eventbus';

/** Cargo's target directory, as `cargo build` run from the repository root uses it. */
function targetDir(): string {
  return path.resolve(REPO_ROOT, process.env.CARGO_TARGET_DIR || 'target');
}

/** The binary the tests run (see the top of this file); it may not exist yet. */
export function eventbusBin(): string {
  const fromEnv = process.env.EVENTBUS_BIN;
  if (fromEnv) return path.resolve(fromEnv);
  const release = path.join(targetDir(), 'release', EXE);
  return existsSync(release) ? release : path.join(targetDir(), 'debug', EXE);
}

/**
 * The binary the tests run, built first with `cargo build -p eventbus-server` (from the repository
 * root, with this process's environment, so `CARGO_TARGET_DIR` carries over) when neither the
 * release nor the debug one exists. A missing `EVENTBUS_BIN` is an error, never built.
 */
export function ensureEventbusBin(): string {
  const bin = eventbusBin();
  if (existsSync(bin)) return bin;
  if (process.env.EVENTBUS_BIN) throw new Error(`EVENTBUS_BIN is ${bin}, which does not exist`);
  console.log(`no eventbus binary under ${targetDir()}: building it with \`cargo build -p eventbus-server\``);
  const build = spawnSync('cargo', ['build', '-p', 'eventbus-server'], { cwd: REPO_ROOT, stdio: 'inherit', env: process.env });
  if (build.error) {
    throw new Error(`cannot run cargo (${build.error.message}): build the server with \`cargo build -p eventbus-server\` or set EVENTBUS_BIN`);
  }
  if (build.status !== 0) throw new Error(`\`cargo build -p eventbus-server\` failed (exit status ${build.status ?? build.signal})`);
  if (!existsSync(bin)) throw new Error(`\`cargo build -p eventbus-server\` succeeded but ${bin} does not exist`);
  return bin;
}
