// Measures the console in Debian's headless Chromium against the real binary (not a test; run by
// hand, see docs/benchmarks.md "The console"):
//   node console-bench.mjs [--rate 1000] [--seconds 10] [--stored 100000]
// 1. Seeds `--stored` events (batches of 1,000), then times the search page's first page and the
//    event-types page (with its per-type counts) on that store.
// 2. Opens the live tail and measures, in the page, frames (requestAnimationFrame intervals),
//    long tasks (> 50 ms) and the JS heap: first idle for `--seconds` (the baseline), then while
//    `--rate` events/s are published (batches of 10 every 10 ms); prints both and their ratio, and
//    how far behind the page's newest row was at the end. Before that, the time from a publish to
//    its row on the page, for 50 single events.
import { parseArgs } from 'node:util';
import { ADMIN_KEY, killBus, launchChromium, startBus } from './harness.mjs';

const { values } = parseArgs({
  options: {
    rate: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '10' },
    stored: { type: 'string', default: '100000' },
  },
});
const rate = Number(values.rate);
const seconds = Number(values.seconds);
const stored = Number(values.stored);

const bus = await startBus();
const browser = await launchChromium();
try {
  const post = async (events) => {
    const r = await fetch(`${bus.url}/v1/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN_KEY}` },
      body: JSON.stringify(events),
    });
    if (r.status !== 201) throw new Error(`publish answered ${r.status}: ${await r.text()}`);
    return r.json();
  };
  const types = ['project.created', 'project.updated', 'user.deleted', 'menu.item_updated', 'integration.status_changed'];
  const event = (i) => ({ type: types[i % types.length], payload: { i, note: 'x'.repeat(64) }, tenantId: `t_${i % 7}`, projectId: `p_${i % 31}` });
  let t = performance.now();
  for (let i = 0; i < stored; i += 1000) await post(Array.from({ length: Math.min(1000, stored - i) }, (_, k) => event(i + k)));
  console.log(`seeded ${stored} events in ${((performance.now() - t) / 1000).toFixed(1)} s`);

  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  await page.goto(`${bus.url}/console`);
  await page.getByLabel('API key').fill(ADMIN_KEY);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: 'Sign out' }).waitFor();

  if (stored > 0) {
    await page.goto(`${bus.url}/console#/search`);
    t = performance.now();
    await page.getByLabel('Types').fill('project.*');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.getByRole('table', { name: 'search results' }).locator('tbody tr').nth(49).waitFor();
    const searchMs = performance.now() - t;
    t = performance.now();
    await page.goto(`${bus.url}/console#/types`);
    await page.getByRole('table', { name: 'event types' }).locator('tr', { hasText: 'project.created' }).waitFor();
    const typesMs = performance.now() - t;
    console.log(`with ${stored} stored events: search first page ${searchMs.toFixed(0)} ms, event types with counts ${typesMs.toFixed(0)} ms`);
  }

  await page.goto(`${bus.url}/console#/tail`);
  await page.getByTestId('stream-status').filter({ hasText: 'live' }).waitFor();
  // Publish → on the page: single events 100 ms apart, each timed until its row is rendered
  // (checked on every animation frame).
  const seen = [];
  for (let i = 0; i < 50; i++) {
    const sent = performance.now();
    const [stored] = await post([event(i)]);
    await page.waitForFunction(
      (seq) => [...document.querySelectorAll('.vrow .seq')].some((e) => e.textContent === String(seq)),
      stored.seq,
      { polling: 'raf', timeout: 10_000 },
    );
    seen.push(performance.now() - sent);
    await new Promise((r) => setTimeout(r, 100));
  }
  seen.sort((a, b) => a - b);
  console.log(
    `publish → row in the live tail, 50 events: p50 ${seen[24].toFixed(1)} ms, p99 ${seen[49].toFixed(1)} ms (max of 50), min ${seen[0].toFixed(1)} ms`,
  );

  const measure = () =>
    page.evaluate(async (ms) => {
      const frames = [];
      let longTasks = 0;
      let longTaskMs = 0;
      const observer = new PerformanceObserver((list) => {
        for (const e of list.getEntries()) {
          longTasks += 1;
          longTaskMs += e.duration;
        }
      });
      observer.observe({ type: 'longtask' });
      const heapBefore = performance.memory?.usedJSHeapSize ?? 0;
      await new Promise((resolve) => {
        const end = performance.now() + ms;
        let last = performance.now();
        const tick = (now) => {
          frames.push(now - last);
          last = now;
          if (now < end) requestAnimationFrame(tick);
          else resolve();
        };
        requestAnimationFrame(tick);
      });
      observer.disconnect();
      frames.sort((a, b) => a - b);
      const q = (p) => frames[Math.min(frames.length - 1, Math.floor(p * frames.length))];
      const newest = Number(document.querySelector('.vrow .seq')?.textContent ?? 0);
      return {
        fps: frames.length / (ms / 1000),
        p50: q(0.5),
        p99: q(0.99),
        max: frames[frames.length - 1],
        longTasks,
        longTaskMs,
        heapMb: (performance.memory?.usedJSHeapSize ?? 0) / 2 ** 20,
        heapGrowthMb: ((performance.memory?.usedJSHeapSize ?? 0) - heapBefore) / 2 ** 20,
        newest,
      };
    }, seconds * 1000);
  const idle = await measure();

  let published = 0;
  let lastSeq = 0;
  let running = true;
  const publisher = (async () => {
    const start = performance.now();
    let n = 0;
    while (running) {
      const due = start + (n * 10_000) / rate;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const out = await post(Array.from({ length: 10 }, (_, k) => event(published + k)));
      published += 10;
      lastSeq = out.events?.at(-1)?.seq ?? out.at?.(-1)?.seq ?? lastSeq;
      n += 1;
    }
  })();
  const loaded = await measure();
  running = false;
  await publisher;
  const row = (name, m) =>
    `${name.padEnd(22)} ${m.fps.toFixed(1).padStart(6)} ${m.p50.toFixed(1).padStart(7)} ${m.p99.toFixed(1).padStart(7)} ${m.max.toFixed(1).padStart(7)} ${String(m.longTasks).padStart(6)} ${m.longTaskMs.toFixed(0).padStart(8)} ${m.heapMb.toFixed(1).padStart(8)} ${m.heapGrowthMb.toFixed(1).padStart(7)}`;
  console.log(`${'tail'.padEnd(22)} ${'fps'.padStart(6)} ${'p50 ms'.padStart(7)} ${'p99 ms'.padStart(7)} ${'max ms'.padStart(7)} ${'long'.padStart(6)} ${'long ms'.padStart(8)} ${'heap MB'.padStart(8)} ${'grew MB'.padStart(7)}`);
  console.log(row('idle (baseline)', idle));
  console.log(row(`${rate} events/s`, loaded));
  console.log(
    `published ${published} events in ${seconds} s (${(published / seconds).toFixed(0)}/s); the page's newest row was seq ${loaded.newest}, the last published ${lastSeq}`,
  );
  console.log(`frame rate under load / idle: ${(loaded.fps / idle.fps).toFixed(2)}`);
} finally {
  await browser.close();
  await killBus(bus);
}
