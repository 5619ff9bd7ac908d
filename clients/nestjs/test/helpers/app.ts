// NestJS applications as processes: the compiled fixture (`dist-test/…`, built by
// `tsconfig.test.json`), started with node, read line by line from stdout, killed with SIGKILL
// or stopped with SIGTERM.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The compiled files the tests start. */
export const WORKER = path.join(ROOT, 'dist-test/clients/nestjs/test/fixtures/worker.js');
export const EXAMPLE = path.join(ROOT, 'dist-test/examples/nest-publisher/src/main.js');
/** The example's sources (for its `prisma/` files). */
export const EXAMPLE_DIR = path.resolve(ROOT, '../../examples/nest-publisher');

export interface App {
  proc: ChildProcess;
  /** Every line it printed so far (stdout and stderr). */
  lines: string[];
  url: string;
}

/** Starts `script` with `env`; resolves when a line matches `ready` (its first group is the URL). */
export function startApp(script: string, env: Record<string, string>, ready: RegExp): Promise<App> {
  const proc = spawn(process.execPath, [script], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', NO_COLOR: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${script} did not start:\n${lines.join('\n')}`)), 30_000);
    const onData = (stream: NodeJS.ReadableStream) => {
      let rest = '';
      stream.on('data', (chunk: Buffer) => {
        const parts = (rest + chunk.toString()).split('\n');
        rest = parts.pop() ?? '';
        for (const line of parts) {
          lines.push(line);
          const m = ready.exec(line);
          if (m) {
            clearTimeout(timer);
            resolve({ proc, lines, url: m[1] ?? '' });
          }
        }
      });
    };
    onData(proc.stdout!);
    onData(proc.stderr!);
    proc.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${script} exited (${code ?? signal}) before it was ready:\n${lines.join('\n')}`));
    });
  });
}

/** Sends `signal` and waits for the process to end. */
export function stopApp(app: App, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (app.proc.exitCode !== null || app.proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    app.proc.once('exit', () => resolve());
    app.proc.kill(signal);
  });
}

/** The `<id> <delivery>` pairs of the lines `<word> <id> <delivery>`. */
export function steps(app: App, word: 'start' | 'done' | 'fail'): { id: string; delivery: number }[] {
  const out: { id: string; delivery: number }[] = [];
  for (const line of app.lines) {
    const m = new RegExp(`^${word} (\\S+) (\\d+)$`).exec(line);
    if (m) out.push({ id: m[1]!, delivery: Number(m[2]) });
  }
  return out;
}
