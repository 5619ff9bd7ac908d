// The real `eventbus` binary for tests: started on an ephemeral loopback port over a temporary
// data directory, killed with SIGKILL, restarted on the same port and data.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
export const BIN = process.env.EVENTBUS_BIN ?? path.join(root, 'target/debug/eventbus');

const tempDirs: string[] = [];
// Registered when a test file imports this module, so it runs after that file's own cleanup.
afterAll(() => {
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A new temporary directory, removed after the test file. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

export interface Bus {
  proc: ChildProcess;
  url: string;
  dir: string;
  port: number;
}

/** Starts the bus on `port` (0: any) over `dir`; resolves once it listens. */
export function startBus(options: { dir?: string; port?: number; env?: Record<string, string> } = {}): Promise<Bus> {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run \`cargo build -p eventbus-server\` first`);
  const dir = options.dir ?? tempDir('eventbus-js-');
  const port = options.port ?? 0;
  return new Promise((resolve, reject) => {
    const proc = spawn(BIN, ['serve'], {
      cwd: dir,
      env: {
        PATH: process.env.PATH ?? '',
        PORT: String(port),
        HOST: '127.0.0.1',
        EVENT_STORE_URL: `sqlite://${path.join(dir, 'eventbus.db')}`,
        RUST_LOG: 'warn',
        ...options.env,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    const timer = setTimeout(() => reject(new Error(`the bus did not start: ${out}`)), 30_000);
    proc.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const m = /eventbus listening on (http:\/\/[\d.:]+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ proc, url: m[1]!, dir, port: Number(new URL(m[1]!).port) });
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the bus exited with ${code}: ${out}`));
    });
  });
}

/** Starts the bus again on the same port, retrying while the port is still being released. */
export async function restartBus(bus: Bus): Promise<Bus> {
  let lastError: unknown;
  for (let i = 0; i < 50; i++) {
    try {
      return await startBus({ dir: bus.dir, port: bus.port });
    } catch (error) {
      lastError = error;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw lastError;
}

/** Kills the bus with SIGKILL and waits until it is gone. */
export function killBus(bus: Bus): Promise<void> {
  if (bus.proc.exitCode !== null || bus.proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    bus.proc.once('exit', () => resolve());
    bus.proc.kill('SIGKILL');
  });
}

/** Waits until `check()` is truthy, polling; fails after `timeoutMs` with `what`. */
export async function waitFor<T>(check: () => T | Promise<T>, what: string, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
