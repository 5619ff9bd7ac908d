// The console's bundle size beside a baseline built the same way in the same run: a page that
// only renders one React element (React and React DOM, nothing of ours). Prints raw and gzip
// sizes and the ratios. Run with `npm run size`.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const here = fileURLToPath(new URL('.', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'console-size-'));
const build = (env) =>
  execFileSync('npx', ['vite', 'build', '--logLevel', 'error'], { cwd: here, env: { ...process.env, ...env }, stdio: 'inherit' });
const sizes = (dir) => {
  let raw = 0;
  let gz = 0;
  for (const f of readdirSync(dir).filter((f) => /\.(js|css)$/.test(f))) {
    const bytes = readFileSync(join(dir, f));
    raw += bytes.length;
    gz += gzipSync(bytes, { level: 9 }).length;
  }
  return { raw, gz };
};
try {
  build({ CONSOLE_OUT_DIR: join(work, 'console') });
  const baselineEntry = join(here, 'src', '.baseline-entry.tsx');
  writeFileSync(baselineEntry, "import { createRoot } from 'react-dom/client';\ncreateRoot(document.body).render(<p>baseline</p>);\n");
  try {
    writeFileSync(join(here, '.baseline.html'), '<!doctype html><script type="module" src="/src/.baseline-entry.tsx"></script>');
    execFileSync('npx', ['vite', 'build', '--logLevel', 'error'], {
      cwd: here,
      env: { ...process.env, CONSOLE_OUT_DIR: join(work, 'baseline'), CONSOLE_ENTRY: join(here, '.baseline.html') },
      stdio: 'inherit',
    });
  } finally {
    rmSync(baselineEntry, { force: true });
    rmSync(join(here, '.baseline.html'), { force: true });
  }
  const c = sizes(join(work, 'console'));
  const b = sizes(join(work, 'baseline'));
  const kb = (n) => `${(n / 1024).toFixed(1)} KiB`;
  console.log(`${'bundle'.padEnd(28)} ${'raw'.padStart(10)} ${'gzip'.padStart(10)}`);
  console.log(`${'baseline (React + React DOM)'.padEnd(28)} ${kb(b.raw).padStart(10)} ${kb(b.gz).padStart(10)}`);
  console.log(`${'console (js + css)'.padEnd(28)} ${kb(c.raw).padStart(10)} ${kb(c.gz).padStart(10)}`);
  console.log(`console / baseline: ${(c.raw / b.raw).toFixed(2)} raw, ${(c.gz / b.gz).toFixed(2)} gzip; the console's own code: ${kb(c.raw - b.raw)} raw, ${kb(c.gz - b.gz)} gzip`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
