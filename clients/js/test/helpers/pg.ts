// PostgreSQL for the few JS tests that need a bus on it: the test database
// (`EVENTBUS_TEST_DATABASE_URL`, default postgres://postgres@127.0.0.1:5432/test, as for the Rust
// tests), a schema of its own per test (through `psql`), and a loopback TCP proxy in front of the
// database that can cut the bus off it and let it back.
import { spawnSync } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import net from 'node:net';

/** The test database. */
export function pgUrl(): string {
  return process.env.EVENTBUS_TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';
}

function psql(sql: string): boolean {
  const run = spawnSync('psql', [pgUrl(), '-qAtc', sql], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, PGOPTIONS: '-c client_min_messages=warning' } });
  return !run.error && run.status === 0;
}

/**
 * A fresh schema named after `test`, or null (after saying why) when PostgreSQL cannot be reached
 * — except in CI (`CI=true`), where that fails the test.
 */
export function createSchema(test: string): string | null {
  const name = `eb_js_${test}_${process.pid}`;
  if (psql(`DROP SCHEMA IF EXISTS ${name} CASCADE; CREATE SCHEMA ${name}`)) return name;
  if (process.env.CI === 'true') throw new Error(`PostgreSQL at ${pgUrl()} is required in CI`);
  const reason = `js ${test}: PostgreSQL at ${pgUrl()} is unreachable`;
  console.warn(`SKIPPED ${reason}`);
  // Listed at the end of scripts/test with the Rust suites' skips, never counted as passed.
  if (process.env.EVENTBUS_TEST_SKIP_LOG) appendFileSync(process.env.EVENTBUS_TEST_SKIP_LOG, `${reason}\n`);
  return null;
}

export function dropSchema(name: string): void {
  psql(`DROP SCHEMA IF EXISTS ${name} CASCADE`);
}

/** `EVENT_STORE_URL` for the schema, through `proxy` when given. */
export function storeUrl(schema: string, proxy?: TcpProxy): string {
  const url = new URL(pgUrl());
  if (proxy) {
    url.hostname = '127.0.0.1';
    url.port = String(proxy.port);
  }
  url.search = '';
  return `${url.toString()}?options=-c%20search_path%3D${schema}`;
}

/** A loopback TCP proxy to the test database. */
export interface TcpProxy {
  port: number;
  /** Closes every connection through it and refuses new ones until `restore()`. */
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

export function startTcpProxy(): Promise<TcpProxy> {
  const upstream = new URL(pgUrl());
  const sockets = new Set<net.Socket>();
  let refusing = false;
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
  };
  const server = net.createServer((client) => {
    track(client);
    if (refusing) {
      client.destroy();
      return;
    }
    const db = net.connect(Number(upstream.port || 5432), upstream.hostname);
    track(db);
    client.pipe(db);
    db.pipe(client);
    client.on('close', () => db.destroy());
    db.on('close', () => client.destroy());
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({
        port: (server.address() as net.AddressInfo).port,
        cut: () => {
          refusing = true;
          for (const s of sockets) s.destroy();
        },
        restore: () => {
          refusing = false;
        },
        close: () =>
          new Promise<void>((r) => {
            for (const s of sockets) s.destroy();
            server.close(() => r());
          }),
      });
    });
  });
}
