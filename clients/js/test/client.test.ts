// The publisher client against the real bus: publish, batches, idempotent retries, problem
// errors, paged queries.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventBusClient, NetworkError, ProblemError, type BusEvent } from '../src/index.js';
import { ADMIN_KEY, killBus, startBus, type Bus } from './helpers/bus.js';
import { startFaultProxy, type FaultProxy } from './helpers/proxy.js';

let bus: Bus;
let proxy: FaultProxy;
beforeAll(async () => {
  bus = await startBus();
  proxy = await startFaultProxy(bus.url);
});
afterAll(async () => {
  await proxy?.close();
  if (bus) await killBus(bus);
});

const fast = { initialDelayMs: 20, maxDelayMs: 200 };

describe('EventBusClient publishing', () => {
  it('publishes one event with a client-generated UUIDv7 and gets it back with its seq', async () => {
    const client = new EventBusClient({ url: bus.url, apiKey: ADMIN_KEY });
    const stored = await client.publish({ type: 'project.created', payload: { name: 'A', projectId: 'p1' }, projectId: 'p1' });
    expect(stored.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7/);
    expect(stored.seq).toBeGreaterThan(0);
    expect(stored.payload).toEqual({ name: 'A', projectId: 'p1' });
    expect(await client.getEvent(stored.id)).toEqual(stored);
    expect(await client.getEvent('no-such-id')).toBeNull();
  });

  it('publishes a batch atomically, in order', async () => {
    const client = new EventBusClient({ url: bus.url, apiKey: ADMIN_KEY });
    const stored = await client.publishBatch([
      { type: 'user.created', payload: { n: 1 } },
      { type: 'user.updated', payload: { n: 2 }, timestamp: new Date('2026-01-01T00:00:00Z') },
    ]);
    expect(stored.map((e) => e.type)).toEqual(['user.created', 'user.updated']);
    expect(stored[1]!.seq).toBeGreaterThan(stored[0]!.seq);
    expect(Date.parse(stored[1]!.timestamp)).toBe(Date.parse('2026-01-01T00:00:00Z'));
  });

  it('turns problem+json answers into ProblemError with status, type and field', async () => {
    const client = new EventBusClient({ url: bus.url, apiKey: ADMIN_KEY });
    const error = await client.publish({ type: 'Not A Type', payload: {} }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ProblemError);
    const p = error as ProblemError;
    expect(p.status).toBe(400);
    expect(p.type).toBe('/problems/invalid-field');
    expect(p.field).toBe('type');
    expect(p.title).toBeTruthy();

    const batchError = await client
      .publishBatch([{ type: 'user.created', payload: {} }, { type: 'bad', payload: {} }])
      .catch((e: unknown) => e as ProblemError);
    expect(batchError).toBeInstanceOf(ProblemError);
    expect((batchError as ProblemError).errors.map((e) => e.field)).toContain('1/type');
  });

  it('answers 409 when an id is reused with other content, and is a no-op with the same', async () => {
    const client = new EventBusClient({ url: bus.url, apiKey: ADMIN_KEY });
    const first = await client.publish({ id: 'fixed-id-1', type: 'user.created', payload: { a: 1 } });
    const again = await client.publish({ id: 'fixed-id-1', type: 'user.created', payload: { a: 1 }, timestamp: first.timestamp });
    expect(again.seq).toBe(first.seq);
    const conflict = await client.publish({ id: 'fixed-id-1', type: 'user.created', payload: { a: 2 } }).catch((e: unknown) => e);
    expect(conflict).toBeInstanceOf(ProblemError);
    expect((conflict as ProblemError).status).toBe(409);
  });

  it('retries 503 and 429 honouring Retry-After, then succeeds', async () => {
    const client = new EventBusClient({ url: proxy.url, apiKey: ADMIN_KEY, retryBackoff: fast });
    proxy.faults.push({ status: 503, retryAfter: '1' }, { status: 429 });
    const before = proxy.requests.length;
    const started = Date.now();
    const stored = await client.publish({ type: 'project.updated', payload: { retry: true } });
    expect(proxy.requests.length - before).toBe(3);
    // Retry-After: 1 was honoured (a lower bound, not a timing assertion on speed).
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    expect((await client.getEvent(stored.id))?.seq).toBe(stored.seq);
  });

  it('a retry after a lost answer stores the event once (same client-generated id)', async () => {
    const client = new EventBusClient({ url: proxy.url, apiKey: ADMIN_KEY, retryBackoff: fast });
    const marker = `lost-${Date.now()}`;
    proxy.faults.push({ status: 503, forwardThenFail: true });
    const stored = await client.publish({ type: 'project.updated', payload: { marker } });
    const found: BusEvent[] = [];
    for await (const e of client.queryEvents({ type: 'project.updated', limit: 1000 })) {
      if ((e.payload as { marker?: string }).marker === marker) found.push(e);
    }
    expect(found).toHaveLength(1);
    expect(found[0]!.id).toBe(stored.id);
  });

  it('retries a 502 and a 504 from a load balancer whose node died after storing, storing the event once', async () => {
    const client = new EventBusClient({ url: proxy.url, apiKey: ADMIN_KEY, retryBackoff: fast });
    const marker = `gateway-${Date.now()}`;
    proxy.faults.push({ status: 502, forwardThenFail: true }, { status: 504 });
    const before = proxy.requests.length;
    const stored = await client.publish({ type: 'project.updated', payload: { marker } });
    expect(proxy.requests.length - before).toBe(3);
    const found: BusEvent[] = [];
    for await (const e of client.queryEvents({ type: 'project.updated', limit: 1000 })) {
      if ((e.payload as { marker?: string }).marker === marker) found.push(e);
    }
    expect(found).toHaveLength(1);
    expect(found[0]!.id).toBe(stored.id);
  });

  it('gives up after maxRetries with the last problem', async () => {
    const client = new EventBusClient({ url: proxy.url, apiKey: ADMIN_KEY, retryBackoff: fast, maxRetries: 2 });
    proxy.faults.push({ status: 503 }, { status: 503 }, { status: 503 });
    const error = await client.publish({ type: 'user.created', payload: {} }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ProblemError);
    expect((error as ProblemError).status).toBe(503);
    expect((error as ProblemError).type).toBe('/problems/overloaded');
  });

  it('reports an unreachable bus as NetworkError', async () => {
    const client = new EventBusClient({ url: 'http://127.0.0.1:9', retryBackoff: fast, maxRetries: 1 });
    await expect(client.publish({ type: 'user.created', payload: {} })).rejects.toBeInstanceOf(NetworkError);
  });
});

describe('EventBusClient.readiness', () => {
  it('reads /health/ready: ok with 200 (open without a key by default), a NetworkError with no bus', async () => {
    const ready = await new EventBusClient({ url: bus.url, apiKey: ADMIN_KEY }).readiness();
    expect(ready.ok).toBe(true);
    expect(ready.status).toBe('ok');
    expect(ready.info?.store?.status).toBe('up');
    expect((await new EventBusClient({ url: bus.url }).readiness()).ok).toBe(true);
    await expect(new EventBusClient({ url: 'http://127.0.0.1:9' }).readiness()).rejects.toBeInstanceOf(NetworkError);
  });
});

describe('EventBusClient.query', () => {
  it('follows nextAfter across pages with filters', async () => {
    const client = new EventBusClient({ url: bus.url, apiKey: ADMIN_KEY });
    const events = Array.from({ length: 25 }, (_, i) => ({ type: 'integration.updated', payload: { i }, projectId: 'q-proj' }));
    await client.publishBatch(events);
    await client.publish({ type: 'integration.updated', payload: { i: 99 }, projectId: 'other' });
    const pages = [];
    for await (const page of client.query({ type: ['integration.*'], projectId: 'q-proj', limit: 10 })) pages.push(page);
    expect(pages.map((p) => p.events.length)).toEqual([10, 10, 5]);
    expect(pages.flatMap((p) => p.events.map((e) => (e.payload as { i: number }).i))).toEqual([...Array(25).keys()]);
    expect(pages.at(-1)!.nextAfter).toBeNull();
  });

  it('asks for the archive too with includeArchived (a parameter the bus would refuse if misnamed)', async () => {
    const client = new EventBusClient({ url: bus.url, apiKey: ADMIN_KEY });
    const hot = [];
    for await (const e of client.queryEvents({ projectId: 'q-proj' })) hot.push(e.seq);
    const all = [];
    for await (const e of client.queryEvents({ projectId: 'q-proj', includeArchived: true, limit: 7 })) all.push(e.seq);
    expect(hot.length).toBe(25);
    expect(all).toEqual(hot);
  });

  it('rejects a bad parameter with a ProblemError', async () => {
    const client = new EventBusClient({ url: bus.url, apiKey: ADMIN_KEY });
    const iterate = async () => {
      for await (const _ of client.query({ limit: 5000 })) void _;
    };
    await expect(iterate()).rejects.toMatchObject({ status: 400, type: '/problems/invalid-parameter' });
  });
});
