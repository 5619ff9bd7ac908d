// Checks that the console files committed in crates/eventbus-server/console are what a fresh
// build of these sources gives: builds into a temporary folder and compares byte for byte (the
// `.gz` files by their content, since gzip's bytes may differ between zlib versions).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';

const committed = fileURLToPath(new URL('../../crates/eventbus-server/console', import.meta.url));
const fresh = mkdtempSync(join(tmpdir(), 'console-build-'));
try {
  execFileSync('npx', ['vite', 'build', '--logLevel', 'warn'], {
    cwd: fileURLToPath(new URL('.', import.meta.url)),
    env: { ...process.env, CONSOLE_OUT_DIR: fresh },
    stdio: 'inherit',
  });
  const names = (dir) => readdirSync(dir).sort();
  const problems = [];
  if (names(fresh).join() !== names(committed).join()) {
    problems.push(`files differ: built ${names(fresh).join(', ')}; committed ${names(committed).join(', ')}`);
  }
  for (const name of names(fresh)) {
    const read = (dir) => {
      const bytes = readFileSync(join(dir, name));
      return name.endsWith('.gz') ? gunzipSync(bytes) : bytes;
    };
    let a;
    try {
      a = read(committed);
    } catch (error) {
      problems.push(`${name}: ${error.message}`);
      continue;
    }
    if (!a.equals(read(fresh))) problems.push(`${name} differs from a fresh build`);
  }
  if (problems.length > 0) {
    console.error(`The committed console is not a build of clients/console:\n  ${problems.join('\n  ')}`);
    console.error('Run `npm run build` in clients/console and commit crates/eventbus-server/console.');
    process.exit(1);
  }
  console.log(`console: the ${names(fresh).length} committed files match a fresh build`);
} finally {
  rmSync(fresh, { recursive: true, force: true });
}
