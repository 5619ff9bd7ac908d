// The outbox tables for tests, in the test database or in a database of its own, created as an
// application creates them: with the binary's `eventbus outbox init`. Also: whether the binary
// relays (`OUTBOX_SOURCES`), and databases of their own on the test server.
import { spawnSync } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { eventbusBin } from './binary.js';
import { pgUrl } from './pg.js';

function psql(url: string, sql: string): { ok: boolean; error: string } {
  const run = spawnSync('psql', [url, '-v', 'ON_ERROR_STOP=1', '-qAtc', sql], {
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...process.env, PGOPTIONS: '-c client_min_messages=warning' },
  });
  return { ok: !run.error && run.status === 0, error: run.error?.message ?? run.stderr };
}

function help(args: string[]): string | null {
  const run = spawnSync(eventbusBin(), [...args, '--help'], { encoding: 'utf8', timeout: 30_000 });
  return !run.error && run.status === 0 ? run.stdout : null;
}

/** Whether the binary's server relays outboxes (its settings name `OUTBOX_SOURCES`). */
export function hasOutboxRelay(): boolean {
  return help(['serve'])?.includes('OUTBOX_SOURCES') ?? false;
}

/** The same server as the test database, database `name`. */
export function databaseUrl(name: string): string {
  const url = new URL(pgUrl());
  url.pathname = `/${name}`;
  return url.toString();
}

/** Says why a test is skipped (outside CI) or fails it (`CI=true`). */
function skip(reason: string): null {
  if (process.env.CI === 'true') throw new Error(reason);
  console.warn(`SKIPPED ${reason}`);
  if (process.env.EVENTBUS_TEST_SKIP_LOG) appendFileSync(process.env.EVENTBUS_TEST_SKIP_LOG, `${reason}\n`);
  return null;
}

/**
 * A fresh database named after `test` on the test server (for a test whose application keeps its
 * outbox in the default schema), or null after saying why when PostgreSQL cannot be reached.
 */
export function createDatabase(test: string): string | null {
  const name = `eb_js_${test}_${process.pid}`;
  const admin = pgUrl();
  if (!psql(admin, `DROP DATABASE IF EXISTS ${name}`).ok || !psql(admin, `CREATE DATABASE ${name}`).ok) {
    return skip(`js ${test}: PostgreSQL at ${admin} is unreachable`);
  }
  return name;
}

export function dropDatabase(name: string): void {
  psql(pgUrl(), `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
}

/** Runs `sql` on `url`; throws with psql's message when it fails. */
export function runSql(url: string, sql: string): void {
  const run = psql(url, sql);
  if (!run.ok) throw new Error(`psql failed: ${run.error}`);
}

/** Creates the outbox tables in `schema` of the database at `url` (`eventbus outbox init`). */
export function initOutbox(url: string, schema = 'eventbus'): void {
  const run = spawnSync(eventbusBin(), ['outbox', 'init', '--url', url, '--schema', schema], { encoding: 'utf8', timeout: 60_000 });
  if (run.error || run.status !== 0) throw new Error(`eventbus outbox init failed: ${run.error?.message ?? run.stderr}`);
}
