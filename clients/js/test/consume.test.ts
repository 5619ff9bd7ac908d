// Consumer groups through `consume` against the real bus: work shared by two loops, redelivery of
// a failed message, the concurrency bound, per-project order, a clean close, a restart of the bus
// under a running loop, and a refusal that ends the loop.
import { afterEach, describe, expect, it } from 'vitest';
import { EventBusClient, ProblemError, type BusEvent, type ConsumedMessage, type ConsumerSettings } from '../src/index.js';
import { ADMIN_KEY, killBus, restartBus, startBus, waitFor, type Bus } from './helpers/bus.js';
import { startFaultProxy } from './helpers/proxy.js';

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function bus(): Promise<Bus> {
  const b = await startBus();
  cleanup.push(() => killBus(b));
  return b;
}

function client(url: string): EventBusClient {
  const c = new EventBusClient({
    url,
    apiKey: ADMIN_KEY,
    reconnectBackoff: { initialDelayMs: 50, maxDelayMs: 300 },
    onHandlerError: () => undefined,
  });
  cleanup.push(() => c.close());
  return c;
}

async function consumerRequest(b: Bus, name: string, init: RequestInit = {}): Promise<Record<string, unknown>> {
  const res = await fetch(`${b.url}/v1/consumers/${name}`, {
    ...init,
    headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${init.method ?? 'GET'} consumer ${name} answered ${res.status}: ${text}`);
  return JSON.parse(text) as Record<string, unknown>;
}

function putConsumer(b: Bus, name: string, settings: ConsumerSettings) {
  return consumerRequest(b, name, { method: 'PUT', body: JSON.stringify(settings) });
}

function jobs(n: number, projectId?: (i: number) => string) {
  return Array.from({ length: n }, (_, i) => ({
    type: 'job.run',
    payload: { i },
    ...(projectId ? { projectId: projectId(i) } : {}),
  }));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('consume', () => {
  it('shares the work of one consumer between two loops, each event handled once', async () => {
    const b = await bus();
    await putConsumer(b, 'workers', { types: ['job.>'] });
    const c = client(b.url);
    const handled = new Map<string, number>();
    const byLoop = [0, 0];
    const loop = (k: number) =>
      c.consume('workers', async (e) => {
        handled.set(e.id, (handled.get(e.id) ?? 0) + 1);
        byLoop[k]!++;
        await sleep(2);
      }, { concurrency: 4, waitMs: 1000 });
    const one = loop(0);
    const two = loop(1);
    cleanup.push(() => one.close(), () => two.close());
    const published = await c.publishBatch(jobs(300));
    await waitFor(() => handled.size === 300, 'every event to be handled');
    await Promise.all([one.close(), two.close()]);
    expect([...handled.keys()].sort()).toEqual(published.map((e) => e.id).sort());
    expect([...handled.values()].every((n) => n === 1)).toBe(true);
    expect(byLoop[0]).toBeGreaterThan(0);
    expect(byLoop[1]).toBeGreaterThan(0);
    const state = await consumerRequest(b, 'workers');
    expect(state.ackPending).toBe(0);
    expect(state.redelivered).toBe(0);
  });

  it('nacks a message whose handler throws and handles its redelivery', async () => {
    const b = await bus();
    const c = client(b.url);
    const deliveries: ConsumedMessage[] = [];
    const errors: unknown[] = [];
    const consumption = c.consume(
      'flaky',
      (_e, message) => {
        deliveries.push(message);
        if (message.deliveryCount === 1) throw new Error('first try fails');
      },
      {
        create: { types: ['job.run'], startAt: 'earliest' },
        nackBackoff: { initialDelayMs: 20, maxDelayMs: 50 },
        waitMs: 1000,
        onHandlerError: (error) => errors.push(error),
      },
    );
    cleanup.push(() => consumption.close());
    const event = await c.publish({ type: 'job.run', payload: { i: 0 } });
    await waitFor(() => deliveries.length === 2, 'the redelivery');
    await consumption.close();
    expect(deliveries.map((m) => [m.event.id, m.deliveryCount])).toEqual([
      [event.id, 1],
      [event.id, 2],
    ]);
    expect(deliveries[0]!.ackId).not.toBe(deliveries[1]!.ackId);
    expect(errors).toHaveLength(1);
    const state = await c.getConsumer('flaky');
    expect(state).toMatchObject({ name: 'flaky', types: ['job.run'], ordered: false, ackPending: 0, redelivered: 1, deadLettered: 0 });
  });

  it('acks handlers that finish together in one request', async () => {
    const b = await bus();
    await putConsumer(b, 'batched', { types: ['job.>'] });
    const answers: string[] = [];
    const c = new EventBusClient({
      url: b.url,
      apiKey: ADMIN_KEY,
      fetch: (input, init) => {
        const path = new URL(String(input)).pathname;
        if (path.endsWith('/ack') || path.endsWith('/nack')) answers.push(String(init?.body));
        return fetch(input, init);
      },
    });
    cleanup.push(() => c.close());
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let started = 0;
    const consumption = c.consume('batched', async () => {
      started++;
      await gate;
    }, { concurrency: 8, waitMs: 1000 });
    cleanup.push(() => consumption.close());
    await c.publishBatch(jobs(8));
    await waitFor(() => started === 8, 'eight handlers to start');
    release();
    await waitFor(() => answers.length > 0, 'the ack');
    await consumption.close();
    expect(answers).toHaveLength(1);
    expect((JSON.parse(answers[0]!) as { ackIds: string[] }).ackIds).toHaveLength(8);
    expect(await c.getConsumer('batched')).toMatchObject({ ackPending: 0, pending: 0 });
  });

  it('runs at most `concurrency` handlers at once', async () => {
    const b = await bus();
    await putConsumer(b, 'bounded', { types: ['job.>'] });
    const c = client(b.url);
    let running = 0;
    let peak = 0;
    let count = 0;
    const consumption = c.consume(
      'bounded',
      async () => {
        running++;
        peak = Math.max(peak, running);
        expect(consumption.inFlight).toBeLessThanOrEqual(3);
        await sleep(20);
        running--;
        count++;
      },
      { concurrency: 3, max: 10, waitMs: 1000 },
    );
    cleanup.push(() => consumption.close());
    await c.publishBatch(jobs(30));
    await waitFor(() => count === 30, 'every event to be handled');
    await consumption.close();
    expect(peak).toBe(3);
  });

  it('keeps per-project order on an ordered consumer', async () => {
    const b = await bus();
    await putConsumer(b, 'ordered', { types: ['job.>'], ordered: true });
    const c = client(b.url);
    const seen = new Map<string, number[]>();
    const busy = new Set<string>();
    let overlap = false;
    const consumption = c.consume(
      'ordered',
      async (e) => {
        const p = e.projectId!;
        if (busy.has(p)) overlap = true;
        busy.add(p);
        seen.set(p, [...(seen.get(p) ?? []), e.seq]);
        await sleep(Math.random() * 5);
        busy.delete(p);
      },
      { concurrency: 4, waitMs: 1000 },
    );
    cleanup.push(() => consumption.close());
    const published = await c.publishBatch(jobs(40, (i) => `p${i % 4}`));
    await waitFor(() => [...seen.values()].reduce((n, l) => n + l.length, 0) === 40, 'every event to be handled');
    await consumption.close();
    expect(overlap).toBe(false);
    for (const [p, seqs] of seen) {
      expect(seqs).toEqual(published.filter((e) => e.projectId === p).map((e) => e.seq));
    }
  });

  it('close() waits for running handlers, acks them and stops fetching', async () => {
    const b = await bus();
    await putConsumer(b, 'closing', { types: ['job.>'] });
    const c = client(b.url);
    const started: BusEvent[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const consumption = c.consume(
      'closing',
      async (e) => {
        started.push(e);
        await gate;
      },
      { concurrency: 2, waitMs: 1000 },
    );
    cleanup.push(() => consumption.close());
    await c.publishBatch(jobs(2));
    await waitFor(() => started.length === 2, 'both handlers to start');
    let closed = false;
    const closing = consumption.close().then(() => (closed = true));
    await sleep(200);
    expect(closed).toBe(false);
    expect(consumption.inFlight).toBe(2);
    release();
    await closing;
    expect(consumption.inFlight).toBe(0);
    expect(consumption.error).toBeNull();
    expect(await consumerRequest(b, 'closing')).toMatchObject({ ackPending: 0, pending: 0 });
    await c.publish({ type: 'job.run', payload: { i: 99 } });
    await sleep(300);
    expect(started).toHaveLength(2);
    expect(await consumerRequest(b, 'closing')).toMatchObject({ ackPending: 0 });
  });

  it('goes on after the bus is killed and restarted', async () => {
    let b = await bus();
    await putConsumer(b, 'survivor', { types: ['job.>'] });
    const c = client(b.url);
    const handled: number[] = [];
    const consumption = c.consume('survivor', (e) => void handled.push((e.payload as { i: number }).i), { waitMs: 1000 });
    cleanup.push(() => consumption.close());
    await c.publish({ type: 'job.run', payload: { i: 1 } });
    await waitFor(() => handled.length === 1, 'the first event');
    await sleep(100); // its ack
    await killBus(b);
    await sleep(300); // fetches fail while the bus is down
    b = await restartBus(b);
    cleanup.push(() => killBus(b));
    await c.publish({ type: 'job.run', payload: { i: 2 } });
    await waitFor(() => handled.includes(2), 'the event published after the restart');
    await consumption.close();
    expect(handled).toEqual([1, 2]);
    expect(consumption.error).toBeNull();
  });

  it('retries a 503 after its Retry-After and a failed ack, handling the event once', async () => {
    const b = await bus();
    const proxy = await startFaultProxy(b.url);
    cleanup.push(() => proxy.close());
    const c = client(proxy.url);
    const publisher = client(b.url);
    proxy.faults.push({ status: 503, retryAfter: '1' });
    const handled: string[] = [];
    const t0 = Date.now();
    const consumption = c.consume('proxied', (e) => void handled.push(e.id), {
      create: { types: ['job.>'] },
      waitMs: 1000,
    });
    cleanup.push(() => consumption.close());
    await waitFor(() => proxy.requests.some((r) => r.includes('/fetch')), 'the first fetch');
    const puts = proxy.requests.filter((r) => r.startsWith('PUT '));
    expect(puts).toHaveLength(2);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    // The next request is the ack (the bus takes it, the client sees a 503 and sends it again,
    // answered 409 as done already) or the next fetch (retried): either way, handled once.
    await waitFor(() => proxy.requests.at(-1)?.includes('/fetch'), 'a fetch waiting');
    const event = await publisher.publish({ type: 'job.run', payload: { i: 1 } });
    proxy.faults.push({ status: 503, forwardThenFail: true });
    await waitFor(async () => proxy.faults.length === 0 && (await publisher.getConsumer('proxied'))?.ackPending === 0, 'the ack');
    await sleep(300);
    await consumption.close();
    expect(handled).toEqual([event.id]);
    expect(consumption.error).toBeNull();
    expect(await publisher.getConsumer('proxied')).toMatchObject({ ackPending: 0, redelivered: 0 });
  });

  it('ends the loop with a ProblemError when the consumer does not exist', async () => {
    const b = await bus();
    const c = client(b.url);
    const errors: Error[] = [];
    const consumption = c.consume('nobody', () => undefined, { onError: (e) => errors.push(e) });
    await consumption.closed;
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(ProblemError);
    expect(await c.getConsumer('nobody')).toBeNull();
    expect((errors[0] as ProblemError).status).toBe(404);
    expect(consumption.error).toBe(errors[0]);
    await consumption.close(); // closing a stopped loop is a no-op
  });

  it('closes when its signal aborts, and rejects a bad name at once', async () => {
    const b = await bus();
    await putConsumer(b, 'aborted', { types: ['job.>'] });
    const c = client(b.url);
    const controller = new AbortController();
    const consumption = c.consume('aborted', () => undefined, { signal: controller.signal, waitMs: 30_000 });
    await sleep(100);
    const t0 = Date.now();
    controller.abort();
    await consumption.closed;
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(() => c.consume('Bad Name', () => undefined)).toThrow(/invalid consumer name/);
  });
});
