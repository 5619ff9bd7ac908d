// Two processes of one NestJS application (test/fixtures/worker.ts) against the real bus: they
// share an @OnBusEvent consumer, one is killed with SIGKILL while handling and the other takes
// over its unacked events, and their Terminus /health turns down when the bus stops.
import { EventBusClient } from '@situs/event-bus-client';
import { afterEach, beforeAll, afterAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, killBus, restartBus, startBus, waitFor, type Bus } from '../../js/test/helpers/bus.js';
import { startApp, steps, stopApp, WORKER, type App } from './helpers/app.js';

let bus: Bus;
let admin: EventBusClient;
const apps: App[] = [];
beforeAll(async () => {
  bus = await startBus();
  admin = new EventBusClient({ url: bus.url, apiKey: ADMIN_KEY });
});
afterEach(async () => {
  await Promise.all(apps.splice(0).map((a) => stopApp(a)));
});
afterAll(async () => {
  if (bus) await killBus(bus);
});

async function worker(env: Record<string, string>): Promise<App> {
  const app = await startApp(WORKER, { EVENT_BUS_URL: bus.url, EVENT_BUS_API_KEY: ADMIN_KEY, ...env }, /^listening (\S+)$/);
  apps.push(app);
  return app;
}

async function publishWork(count: number, type = 'work.item', payload: (i: number) => Record<string, unknown> = () => ({})): Promise<string[]> {
  const ids: string[] = [];
  for (let start = 0; start < count; start += 100) {
    const batch = Array.from({ length: Math.min(100, count - start) }, (_, k) => ({ type, payload: { i: start + k, ...payload(start + k) } }));
    ids.push(...(await admin.publishBatch(batch)).map((e) => e.id));
  }
  return ids;
}

/** What Terminus answers on `/health`. */
interface HealthBody {
  status: string;
  info?: Record<string, { status: string; consumers?: Record<string, { status: string }> }>;
  error?: Record<string, { status: string }>;
}

const doneIds = (...apps: App[]) => apps.flatMap((a) => steps(a, 'done').map((s) => s.id));

describe('two replicas of a NestJS application', () => {
  it('share one consumer: each event is handled once, a failed one again after its retry', async () => {
    const a = await worker({ CONSUMER: 'shared', HANDLE_MS: '2' });
    const b = await worker({ CONSUMER: 'shared', HANDLE_MS: '2' });
    const ids = await publishWork(400, 'work.item', (i) => (i % 40 === 0 ? { failFirst: true } : {}));
    const failing = ids.filter((_, i) => i % 40 === 0);

    await waitFor(() => new Set(doneIds(a, b)).size === ids.length, 'every event to be handled', 60_000);
    const done = doneIds(a, b);
    expect(done.length).toBe(ids.length);
    expect(new Set(done)).toEqual(new Set(ids));
    // Both did part of the work.
    expect(steps(a, 'done').length).toBeGreaterThan(0);
    expect(steps(b, 'done').length).toBeGreaterThan(0);
    // Each event was started once, except the failing ones: once more after their failure.
    const starts = new Map<string, number[]>();
    for (const s of [...steps(a, 'start'), ...steps(b, 'start')]) starts.set(s.id, [...(starts.get(s.id) ?? []), s.delivery]);
    for (const id of ids) {
      expect(starts.get(id)?.sort(), id).toEqual(failing.includes(id) ? [1, 2] : [1]);
    }
    // A handler's ack follows its `done` line: wait for the last acks to reach the bus.
    await waitFor(async () => (await admin.getConsumer('shared'))?.ackPending === 0, 'the last acks');
    const info = await admin.getConsumer('shared');
    expect([info?.pending, info?.ackPending, info?.deadLettered]).toEqual([0, 0, 0]);
  });

  it('hands the unacked events of a replica killed with SIGKILL to the other', async () => {
    const env = { CONSUMER: 'takeover', TYPES: 'takeover.*', HANDLE_MS: '400', ACK_WAIT_MS: '1500', CONCURRENCY: '4' };
    const a = await worker(env);
    const ids = await publishWork(24, 'takeover.item');
    // `a` alone: it holds up to 4 events in its handlers when it dies.
    await waitFor(() => steps(a, 'start').length >= 6, 'the first replica to be handling');
    await stopApp(a, 'SIGKILL');
    const finishedByA = new Set(doneIds(a));
    const unfinished = steps(a, 'start').filter((s) => !finishedByA.has(s.id)).map((s) => s.id);
    expect(unfinished.length).toBeGreaterThan(0);

    const b = await worker(env);
    await waitFor(() => new Set([...finishedByA, ...doneIds(b)]).size === ids.length, 'the survivor to finish the work', 60_000);
    expect(new Set([...finishedByA, ...doneIds(b)])).toEqual(new Set(ids));
    // What `a` held when it died reached `b` as a redelivery.
    const redelivered = new Map(steps(b, 'done').map((s) => [s.id, s.delivery]));
    for (const id of unfinished) expect(redelivered.get(id), id).toBeGreaterThanOrEqual(2);
    // Nothing `a` had finished (and acked) was handed out again.
    for (const id of finishedByA) expect(redelivered.has(id), id).toBe(false);
  });

  it('reports down on /health while the bus is stopped, and up again after', async () => {
    const a = await worker({ CONSUMER: 'health', TYPES: 'health.*' });
    const health = async () => {
      const res = await fetch(`${a.url}/health`);
      return { status: res.status, body: (await res.json()) as HealthBody };
    };
    // Up once the worker's consume loop has created its consumer on the bus.
    const up = await waitFor(async () => {
      const h = await health();
      return h.status === 200 ? h : undefined;
    }, '/health to be up');
    if (!up) throw new Error('unreachable: waitFor resolves with a value');
    expect(up.body.info?.eventBus?.status).toBe('up');
    expect(up.body.info?.eventBus?.consumers?.health?.status).toBe('up');

    await killBus(bus);
    const down = await health();
    expect(down.status).toBe(503);
    expect(down.body.error?.eventBus).toMatchObject({ status: 'down' });

    bus = await restartBus(bus);
    await waitFor(async () => (await health()).status === 200, '/health to recover');
  });
});
