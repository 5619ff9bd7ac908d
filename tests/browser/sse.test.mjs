// A page's native EventSource receives published events, and resumes after the server restarts
// (the browser sends Last-Event-ID itself): every event arrives once, in order.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { killBus, launchChromium, publish, servePage, startBus } from './harness.mjs';

const cleanup = [];
after(async () => {
  for (const f of cleanup.reverse()) await f();
});

test('native EventSource receives events and resumes after a server restart', async () => {
  let bus = await startBus();
  cleanup.push(() => bus.proc.kill('SIGKILL'));
  const page = await servePage(`<!doctype html><title>stream</title><script>
    window.received = [];
    window.es = new EventSource(${JSON.stringify(bus.url)} + '/v1/stream?types=project.*');
    es.addEventListener('project.created', (e) => {
      const event = JSON.parse(e.data);
      window.received.push({ id: Number(e.lastEventId), seq: event.seq, n: event.payload.n });
    });
  </script>`);
  cleanup.push(page.close);
  const browser = await launchChromium();
  cleanup.push(() => browser.close());
  const tab = await browser.newPage();
  await tab.goto(page.url);
  await tab.waitForFunction(() => window.es.readyState === 1, null, { timeout: 15_000 });

  for (let n = 1; n <= 5; n++) await publish(bus.url, { type: 'project.created', payload: { n } });
  await publish(bus.url, { type: 'user.created', payload: {} });
  await tab.waitForFunction(() => window.received.length >= 5, null, { timeout: 15_000 });

  // kill -9, restart on the same port and data; publish before the browser is back.
  await killBus(bus);
  bus = await startBus({ dir: bus.dir, port: bus.port });
  for (let n = 6; n <= 10; n++) await publish(bus.url, { type: 'project.created', payload: { n } });

  await tab.waitForFunction(() => window.received.length >= 10, null, { timeout: 30_000 });
  const received = await tab.evaluate(() => window.received);
  assert.deepEqual(received.map((r) => r.n), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 'every event once, in order');
  assert.deepEqual(received.map((r) => r.id), received.map((r) => r.seq), 'the SSE id is the seq');
  assert.deepEqual(received.map((r) => r.seq), [1, 2, 3, 4, 5, 7, 8, 9, 10, 11]);
});
