// A page's native EventSource, authenticated with a stream token in `?token=` (EventSource cannot
// send headers), receives published events, and resumes after the server restarts (the browser
// sends Last-Event-ID itself, with the same token: its signing secret is in the database): every
// event arrives once, in order. A stream without a token is refused.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { killBus, launchChromium, mintToken, publish, servePage, startBus } from './harness.mjs';

const cleanup = [];
after(async () => {
  for (const f of cleanup.reverse()) await f();
});

test('native EventSource with a stream token receives events and resumes after a server restart', async () => {
  let bus = await startBus();
  cleanup.push(() => bus.proc.kill('SIGKILL'));
  // What the page's backend would do: mint a token with its key, long enough for the test.
  const { token } = await mintToken(bus.url, { types: ['project.*'], ttlSeconds: 600 });
  const streamUrl = `${bus.url}/v1/stream?types=project.*&token=${encodeURIComponent(token)}`;
  const page = await servePage(`<!doctype html><title>stream</title><script>
    window.received = [];
    window.refused = new Promise((resolve) => {
      const bare = new EventSource(${JSON.stringify(`${bus.url}/v1/stream?types=project.*`)});
      bare.onerror = () => { resolve(bare.readyState); bare.close(); };
    });
    window.es = new EventSource(${JSON.stringify(streamUrl)});
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
  // Without a token the bus answers 401: EventSource fails for good (CLOSED), it does not retry.
  assert.equal(await tab.evaluate(() => window.refused), 2, 'a stream without a token is refused');

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
