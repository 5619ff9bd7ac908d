// Runs once before the suite, in vitest's main process: generates the Prisma 7 client of the
// outbox tests' application (`test/fixtures/prisma/schema.prisma`) into `.prisma/outbox-test/`
// (git-ignored). `prisma generate` needs no schema engine, but the CLI looks for one and would
// download it: `PRISMA_SCHEMA_ENGINE_BINARY` points it at a stand-in script, so no network is used.
// At run time the client needs no engine either (`@prisma/adapter-pg`).
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SCHEMA = path.join(ROOT, 'test/fixtures/prisma/schema.prisma');

/** The generated client's entry point (`PrismaClient`). */
export const PRISMA_CLIENT = path.join(ROOT, '.prisma/outbox-test/client.ts');

export default function setup(): void {
  if (existsSync(PRISMA_CLIENT) && statSync(PRISMA_CLIENT).mtimeMs >= statSync(SCHEMA).mtimeMs) return;
  const dir = mkdtempSync(path.join(tmpdir(), 'eventbus-prisma-'));
  try {
    const engine = path.join(dir, 'schema-engine');
    writeFileSync(engine, '#!/bin/sh\necho "schema-engine-cli 0.0.0"\n');
    chmodSync(engine, 0o755);
    const prisma = path.join(ROOT, 'node_modules/.bin/prisma');
    const run = spawnSync(prisma, ['generate', '--schema', SCHEMA], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 120_000,
      env: { ...process.env, PRISMA_SCHEMA_ENGINE_BINARY: engine, PRISMA_HIDE_UPDATE_MESSAGE: '1' },
    });
    if (run.error || run.status !== 0) {
      throw new Error(`prisma generate failed: ${run.error?.message ?? `${run.stdout}${run.stderr}`}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
