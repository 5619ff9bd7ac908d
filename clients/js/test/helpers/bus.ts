// The real `eventbus` binary for tests (found by `binary.ts`): started on an ephemeral loopback
// port over a temporary data directory with a known admin key, killed with SIGKILL, restarted on
// the same port and data. Also: API keys (`POST /v1/keys`) and stream tokens (`POST /v1/tokens`).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll } from 'vitest';
import { eventbusBin } from './binary.js';

/** The `eventbus` binary the tests start (`EVENTBUS_BIN`, else the release or debug build). */
export const BIN = eventbusBin();

/** The bootstrap admin key every test bus starts with (`EVENT_BUS_ADMIN_KEY`): every permission. */
export const ADMIN_KEY = 'test-admin-key-0123456789abcdef';

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
  /** The extra environment it was started with (kept on restart). */
  env: Record<string, string>;
}

/** Starts the bus on `port` (0: any) over `dir`; resolves once it listens. */
export function startBus(options: { dir?: string; port?: number; env?: Record<string, string> } = {}): Promise<Bus> {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: build it with \`cargo build -p eventbus-server\` or set EVENTBUS_BIN`);
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
        EVENT_BUS_ADMIN_KEY: ADMIN_KEY,
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
        resolve({ proc, url: m[1]!, dir, port: Number(new URL(m[1]!).port), env: options.env ?? {} });
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
      return await startBus({ dir: bus.dir, port: bus.port, env: bus.env });
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

/** A permission of an API key. */
export type Permission = 'publish' | 'subscribe' | 'read' | 'admin';

/** The body of `POST /v1/keys`. */
export interface KeySpec {
  name?: string;
  tenantId?: string;
  projectIds?: string[];
  permissions: Permission[];
  types?: string[];
  typesByPermission?: Partial<Record<Permission, string[]>>;
  rateLimit?: number;
  maxConnections?: number;
  expiresAt?: string;
}

async function postJson(url: string, key: string, body: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  if (res.status !== 201) throw new Error(`POST ${url} answered ${res.status}: ${text}`);
  return JSON.parse(text) as Record<string, unknown>;
}

/** Creates an API key with the admin key; resolves to its secret (`ebk_…`). */
export async function createKey(bus: { url: string }, spec: KeySpec): Promise<string> {
  const body = await postJson(`${bus.url}/v1/keys`, ADMIN_KEY, { name: 'test key', ...spec });
  if (typeof body.key !== 'string' || !body.key.startsWith('ebk_')) throw new Error(`no key in ${JSON.stringify(body)}`);
  return body.key;
}

/** The body of `POST /v1/tokens`. */
export interface TokenSpec {
  projectIds?: string[];
  types?: string[];
  ttlSeconds?: number;
}

/** Mints a stream token with `key` (which needs `subscribe`; default: the admin key). */
export async function mintToken(bus: { url: string }, spec: TokenSpec = {}, key: string = ADMIN_KEY): Promise<{ token: string; expiresAt: string }> {
  const body = await postJson(`${bus.url}/v1/tokens`, key, spec);
  if (typeof body.token !== 'string') throw new Error(`no token in ${JSON.stringify(body)}`);
  return { token: body.token, expiresAt: String(body.expiresAt) };
}
