// Streaming subscriptions against the real bus: delivery, multiplexing on one connection,
// unsubscribe, and resume across kill -9 + restart without gaps or duplicates.
import { afterEach, describe, expect, it } from 'vitest';
import { EventBusClient, type BusEvent, type ConnectionStatus, type StreamRequest } from '../src/index.js';
import { fetchTransport } from '../src/transport/index.js';
import { ADMIN_KEY, killBus, restartBus, startBus, waitFor, type Bus } from './helpers/bus.js';
import { gate, gatedFetch, openGate } from './helpers/stream.js';

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function bus(): Promise<Bus> {
  const b = await startBus();
  cleanup.push(() => killBus(b));
  return b;
}

/** A client whose stream attempts are counted (over the real fetch transport). */
function countingClient(url: string) {
  const attempts: StreamRequest[] = [];
  const inner = fetchTransport();
  const client = new EventBusClient({
    url,
    apiKey: ADMIN_KEY,
    reconnectBackoff: { initialDelayMs: 50, maxDelayMs: 500 },
    transport: (req) => {
      attempts.push(req);
      return inner(req);
    },
  });
  cleanup.push(() => client.close());
  return { client, attempts };
}

describe('subscribe', () => {
  it('delivers matching events to each subscription over one shared connection', async () => {
    const b = await bus();
    const { client, attempts } = countingClient(b.url);
    const projects: BusEvent[] = [];
    const created: BusEvent[] = [];
    const users: BusEvent[] = [];
    client.subscribe({ types: ['project.*'] }, (e) => projects.push(e));
    client.subscribe('project.created', (e) => created.push(e));
    client.subscribe({ types: ['user.>'] }, (e) => users.push(e));
    await waitFor(() => client.status === 'open', 'the stream to open');
    expect(attempts).toHaveLength(1);
    expect(new URL(attempts[0]!.url).searchParams.get('types')).toBe('project.*,user.>');
    expect(attempts[0]!.headers.authorization).toBe(`Bearer ${ADMIN_KEY}`);

    await client.publish({ type: 'project.created', payload: { n: 1 } });
    await client.publish({ type: 'project.updated', payload: { n: 2 } });
    await client.publish({ type: 'user.created', payload: { n: 3 } });
    await client.publish({ type: 'menu.item_updated', payload: { n: 4 } });
    await waitFor(() => projects.length === 2 && users.length === 1, 'the events');
    expect(projects.map((e) => e.type)).toEqual(['project.created', 'project.updated']);
    expect(created.map((e) => e.payload)).toEqual([{ n: 1 }]);
    expect(users.map((e) => e.payload)).toEqual([{ n: 3 }]);
    expect(attempts).toHaveLength(1);
  });

  it('gives a different project its own connection, filtered by the server', async () => {
    const b = await bus();
    const { client, attempts } = countingClient(b.url);
    const p1: BusEvent[] = [];
    const p2: BusEvent[] = [];
    client.subscribe({ types: ['project.*'], projectId: 'p1' }, (e) => p1.push(e));
    client.subscribe({ types: ['project.*'], projectId: 'p2' }, (e) => p2.push(e));
    await waitFor(() => client.status === 'open', 'the streams to open');
    expect(attempts.map((a) => new URL(a.url).searchParams.get('projectId')).sort()).toEqual(['p1', 'p2']);
    await client.publish({ type: 'project.created', payload: {}, projectId: 'p1' });
    await client.publish({ type: 'project.created', payload: {}, projectId: 'p2' });
    await client.publish({ type: 'project.updated', payload: {}, projectId: 'p1' });
    await waitFor(() => p1.length === 2 && p2.length === 1, 'the events');
    expect(p1.every((e) => e.projectId === 'p1')).toBe(true);
    expect(p2.every((e) => e.projectId === 'p2')).toBe(true);
  });

  it('widens a running connection for a new pattern and resumes from its cursor', async () => {
    const b = await bus();
    const { client, attempts } = countingClient(b.url);
    const projects: BusEvent[] = [];
    const users: BusEvent[] = [];
    client.subscribe('project.created', (e) => projects.push(e));
    await waitFor(() => client.status === 'open', 'the stream to open');
    await client.publish({ type: 'project.created', payload: { n: 1 } });
    await waitFor(() => projects.length === 1, 'the first event');

    client.subscribe('user.created', (e) => users.push(e));
    await waitFor(() => attempts.length === 2 && client.status === 'open', 'the wider stream');
    expect(new URL(attempts[1]!.url).searchParams.get('types')).toBe('project.created,user.created');
    expect(attempts[1]!.lastEventId).toBe(projects[0]!.seq);
    await client.publish({ type: 'project.created', payload: { n: 2 } });
    await client.publish({ type: 'user.created', payload: { n: 3 } });
    await waitFor(() => projects.length === 2 && users.length === 1, 'events on the wider stream');
    expect(projects.map((e) => e.payload)).toEqual([{ n: 1 }, { n: 2 }]);

    // A pattern already covered shares the connection as it is.
    client.subscribe('project.created', () => undefined);
    await new Promise((r) => setTimeout(r, 50));
    expect(attempts).toHaveLength(2);
  });

  it('unsubscribe stops delivery; the last one closes the connection', async () => {
    const b = await bus();
    const { client } = countingClient(b.url);
    const statuses: ConnectionStatus[] = [];
    client.onStatusChange((s) => statuses.push(s));
    const a: BusEvent[] = [];
    const c: BusEvent[] = [];
    const subA = client.subscribe('user.created', (e) => a.push(e));
    const subC = client.subscribe('user.created', (e) => c.push(e));
    await waitFor(() => client.status === 'open', 'the stream to open');
    expect(subA.status).toBe('open');
    await client.publish({ type: 'user.created', payload: { n: 1 } });
    await waitFor(() => a.length === 1 && c.length === 1, 'the first event');
    subA.unsubscribe();
    expect(subA.status).toBe('closed');
    await client.publish({ type: 'user.created', payload: { n: 2 } });
    await waitFor(() => c.length === 2, 'the second event');
    expect(a).toHaveLength(1);
    subC.unsubscribe();
    await waitFor(() => client.status === 'closed', 'the connection to close');
    expect(statuses).toEqual(['connecting', 'open', 'closed']);
  });

  it('replays stored events after `after` first, then continues live', async () => {
    const b = await bus();
    const { client } = countingClient(b.url);
    const first = await client.publish({ type: 'plugin.installed', payload: { n: 1 } });
    await client.publish({ type: 'plugin.installed', payload: { n: 2 } });
    await client.publish({ type: 'plugin.updated', payload: { n: 3 } });
    const got: BusEvent[] = [];
    client.subscribe('plugin.*', (e) => got.push(e), { after: first.seq });
    await waitFor(() => got.length === 2, 'the replay');
    await client.publish({ type: 'plugin.uninstalled', payload: { n: 4 } });
    await waitFor(() => got.length === 3, 'the live event');
    expect(got.map((e) => e.payload)).toEqual([{ n: 2 }, { n: 3 }, { n: 4 }]);
  });

  it('reports a refused filter through onError and closes', async () => {
    const b = await bus();
    const { client } = countingClient(b.url);
    const errors: Error[] = [];
    // The bus refuses an empty projectId with 400: reconnecting would not help.
    client.subscribe({ types: ['project.*'], projectId: '' }, () => undefined, { onError: (e) => errors.push(e) });
    await waitFor(() => errors.length === 1, 'the refusal');
    expect(errors[0]).toMatchObject({ status: 400, type: '/problems/invalid-parameter', field: 'projectId' });
    await waitFor(() => client.status === 'closed', 'the connection to close');
  });
});

describe('reconnection against a restarted bus', () => {
  it('resumes after kill -9 and restart: every event once, in order', async () => {
    let b = await bus();
    cleanup.push(() => killBus(b));
    const { client, attempts } = countingClient(b.url);
    const statuses: ConnectionStatus[] = [];
    client.onStatusChange((s) => statuses.push(s));
    const got: BusEvent[] = [];
    client.subscribe({ types: ['project.*'], projectId: 'p1' }, (e) => got.push(e));
    await waitFor(() => client.status === 'open', 'the stream to open');

    for (let n = 1; n <= 5; n++) await client.publish({ type: 'project.updated', payload: { n }, projectId: 'p1' });
    await client.publish({ type: 'project.updated', payload: { n: -1 }, projectId: 'elsewhere' });
    await waitFor(() => got.length === 5, 'the first five events');

    await killBus(b);
    await waitFor(() => client.status === 'reconnecting', 'the client to notice');
    b = await restartBus(b);
    // Published while the client is still away: it must get them from the store on resume.
    for (let n = 6; n <= 10; n++) await client.publish({ type: 'project.updated', payload: { n }, projectId: 'p1' });
    await waitFor(() => got.length >= 10 && client.status === 'open', 'the events after the restart', 30_000);
    for (let n = 11; n <= 12; n++) await client.publish({ type: 'project.updated', payload: { n }, projectId: 'p1' });
    await waitFor(() => got.length >= 12, 'live events after the resume');

    expect(got.map((e) => (e.payload as { n: number }).n)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    const seqs = got.map((e) => e.seq);
    expect(new Set(seqs).size).toBe(seqs.length);
    expect([...seqs].sort((x, y) => x - y)).toEqual(seqs);
    expect(statuses).toContain('reconnecting');
    expect(statuses.at(-1)).toBe('open');
    // Every reconnection asked to resume after the last event seen before the outage.
    const resumed = attempts.slice(1);
    expect(resumed.length).toBeGreaterThan(0);
    expect(resumed.every((a) => a.lastEventId === got[4]!.seq)).toBe(true);
  });

  it('survives several restarts in a row', async () => {
    let b = await bus();
    cleanup.push(() => killBus(b));
    const { client } = countingClient(b.url);
    const got: number[] = [];
    client.subscribe('integration.*', (e) => got.push((e.payload as { n: number }).n));
    await waitFor(() => client.status === 'open', 'the stream to open');
    let n = 0;
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 3; i++) await client.publish({ type: 'integration.updated', payload: { n: ++n } });
      await killBus(b);
      b = await restartBus(b);
      for (let i = 0; i < 3; i++) await client.publish({ type: 'integration.updated', payload: { n: ++n } });
    }
    await waitFor(() => got.length >= n, 'every event', 30_000);
    expect(got).toEqual([...Array(n).keys()].map((i) => i + 1));
  });
});

describe('a slow reader against the real bus', () => {
  it('on `lagged` reconnects from its cursor and catches up from the store: every event once, in order', async () => {
    const b = await startBus({ env: { SSE_QUEUE: '4' } });
    cleanup.push(() => killBus(b));
    // The stream body is read only while the gate is open: closed, the socket fills up and the
    // bus sees a slow client (TCP back-pressure, nothing simulated on the bus side).
    const valve = gate();
    const attempts: StreamRequest[] = [];
    const inner = fetchTransport({ fetch: gatedFetch(valve) });
    const control: string[] = [];
    const client = new EventBusClient({
      url: b.url,
      apiKey: ADMIN_KEY,
      reconnectBackoff: { initialDelayMs: 50, maxDelayMs: 500 },
      transport: (req) => {
        attempts.push(req);
        return inner({
          ...req,
          onMessage: (m) => {
            if (m.id === undefined) control.push(m.event);
            req.onMessage(m);
          },
        });
      },
    });
    cleanup.push(() => client.close());
    const got: number[] = [];
    client.subscribe('project.updated', (e) => got.push((e.payload as { n: number }).n));
    await waitFor(() => client.status === 'open', 'the stream to open');

    valve.open = false;
    const filler = 'x'.repeat(100_000);
    const total = 200;
    for (let start = 0; start < total; start += 20) {
      await client.publishBatch(
        Array.from({ length: 20 }, (_, i) => ({ type: 'project.updated', payload: { n: start + i + 1, filler } })),
      );
    }
    openGate(valve);
    await waitFor(() => got.length >= total, 'every event after catching up', 60_000);
    expect(got).toEqual([...Array(total).keys()].map((i) => i + 1));
    // The bus did cut the slow stream with `lagged`, and the client resumed from where it was.
    expect(control).toContain('lagged');
    expect(attempts.length).toBeGreaterThan(1);
    expect(attempts[1]!.lastEventId).not.toBeNull();
  });
});
