// Authentication against the real bus: API keys and their refusals as typed errors (401, 403,
// 429), stream tokens that expire under a live stream (refreshed through `getToken`, or reported
// when static), and tenant isolation of a tenant-bound key's stream.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  EventBusClient,
  ProblemError,
  TokenExpiredError,
  type BusEvent,
  type StreamRequest,
} from '../src/index.js';
import { fetchTransport, type SseMessage } from '../src/transport/index.js';
import { ADMIN_KEY, createKey, killBus, mintToken, startBus, waitFor, type Bus } from './helpers/bus.js';

let bus: Bus;
let admin: EventBusClient;
beforeAll(async () => {
  bus = await startBus();
  admin = new EventBusClient({ url: bus.url, apiKey: ADMIN_KEY, maxRetries: 0 });
});
afterAll(async () => {
  if (bus) await killBus(bus);
});

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

/** A client whose stream attempts and control events are recorded (over the real fetch transport). */
function recordingClient(options: Omit<ConstructorParameters<typeof EventBusClient>[0], 'url' | 'transport'>) {
  const attempts: StreamRequest[] = [];
  const control: SseMessage[] = [];
  const inner = fetchTransport();
  const client = new EventBusClient({
    url: bus.url,
    reconnectBackoff: { initialDelayMs: 50, maxDelayMs: 500 },
    ...options,
    transport: (req) => {
      attempts.push(req);
      return inner({
        ...req,
        onMessage: (m) => {
          if (m.id === undefined) control.push(m);
          req.onMessage(m);
        },
      });
    },
  });
  cleanup.push(() => client.close());
  return { client, attempts, control };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('API keys', () => {
  it('a wrong or missing key is a ProblemError 401, on publish, query and stream', async () => {
    const wrong = new EventBusClient({ url: bus.url, apiKey: 'ebk_0000000000000000_not-a-real-secret', maxRetries: 0 });
    const error = await wrong.publish({ type: 'project.created', payload: {} }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ProblemError);
    expect((error as ProblemError).status).toBe(401);
    expect((error as ProblemError).title).toBeTruthy();

    const none = new EventBusClient({ url: bus.url, maxRetries: 0 });
    await expect(none.getEvent('anything')).rejects.toMatchObject({ name: 'ProblemError', status: 401 });

    // A stream refused with 401 and no way to get another credential stops at once.
    const { client, attempts } = recordingClient({ apiKey: 'ebk_0000000000000000_not-a-real-secret' });
    const errors: Error[] = [];
    client.subscribe('project.*', () => undefined, { onError: (e) => errors.push(e) });
    await waitFor(() => errors.length === 1, 'the refusal');
    expect(errors[0]).toBeInstanceOf(ProblemError);
    expect((errors[0] as ProblemError).status).toBe(401);
    await waitFor(() => client.status === 'closed', 'the stream to close');
    await sleep(300);
    expect(attempts).toHaveLength(1);
  });

  it('a key without the permission is a ProblemError 403', async () => {
    const key = await createKey(bus, { name: 'reader only', permissions: ['subscribe'] });
    const client = new EventBusClient({ url: bus.url, apiKey: key, maxRetries: 0 });
    const error = await client.publish({ type: 'project.created', payload: {} }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ProblemError);
    expect((error as ProblemError).status).toBe(403);
  });

  it('a publish over the key rate limit is a ProblemError 429 with its Retry-After', async () => {
    const key = await createKey(bus, { name: 'slow publisher', permissions: ['publish'], rateLimit: 1 });
    const client = new EventBusClient({ url: bus.url, apiKey: key, maxRetries: 0 });
    let limited: ProblemError | undefined;
    for (let i = 0; i < 20 && !limited; i++) {
      const result = await client.publish({ type: 'project.updated', payload: { i } }).catch((e: unknown) => e);
      if (result instanceof ProblemError) limited = result;
    }
    expect(limited).toBeInstanceOf(ProblemError);
    expect(limited!.status).toBe(429);
    expect(limited!.retryAfterMs).toBeGreaterThan(0);
    // With retries, the client waits as asked and gets through.
    const patient = new EventBusClient({ url: bus.url, apiKey: key, maxRetries: 5, retryBackoff: { initialDelayMs: 20, maxDelayMs: 200 } });
    const stored = await patient.publish({ type: 'project.updated', payload: { after: 'waiting' } });
    expect(stored.seq).toBeGreaterThan(0);
  });
});

describe('stream tokens', () => {
  it('with getToken, a stream survives its tokens expiring: every event once, in order', async () => {
    const minted: string[] = [];
    const { client, attempts, control } = recordingClient({
      getToken: async () => {
        const { token } = await mintToken(bus, { types: ['project.*'], ttlSeconds: 2 });
        minted.push(token);
        return token;
      },
    });
    const got: BusEvent[] = [];
    client.subscribe({ types: ['project.*'], projectId: 'tok-1' }, (e) => got.push(e));
    await waitFor(() => client.status === 'open', 'the stream to open');

    // Publish steadily across at least two expiries, so some events land while the client is
    // between tokens.
    const total = 30;
    for (let n = 1; n <= total; n++) {
      await admin.publish({ type: 'project.updated', projectId: 'tok-1', payload: { n } });
      if (n % 5 === 0) await admin.publish({ type: 'project.updated', projectId: 'elsewhere', payload: { n: -n } });
      await sleep(150);
    }
    await waitFor(() => got.length >= total, 'every event', 20_000);
    await sleep(200);

    expect(got.map((e) => (e.payload as { n: number }).n)).toEqual([...Array(total).keys()].map((i) => i + 1));
    const seqs = got.map((e) => e.seq);
    expect(new Set(seqs).size).toBe(total);
    expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
    // The bus did end streams with token_expired, and each reconnection used a new token and
    // resumed after the last event received.
    const expired = control.filter((m) => m.event === 'token_expired');
    expect(expired.length).toBeGreaterThanOrEqual(2);
    expect(attempts.length).toBeGreaterThanOrEqual(3);
    const tokens = attempts.map((a) => new URL(a.url).searchParams.get('token'));
    expect(new Set(tokens).size).toBe(tokens.length);
    expect(tokens.every((t) => t !== null && minted.includes(t))).toBe(true);
    for (const a of attempts.slice(1)) {
      expect(a.lastEventId).not.toBeNull();
      expect(seqs).toContain(a.lastEventId);
    }
    expect(client.status).toBe('open');
  }, 30_000);

  it('with a static token, expiry closes the stream with a TokenExpiredError instead of looping', async () => {
    const { token } = await mintToken(bus, { ttlSeconds: 2 });
    const { client, attempts, control } = recordingClient({ token });
    const got: BusEvent[] = [];
    const errors: Error[] = [];
    client.subscribe('project.*', (e) => got.push(e), { onError: (e) => errors.push(e) });
    await waitFor(() => client.status === 'open', 'the stream to open');
    const first = await admin.publish({ type: 'project.created', projectId: 'static', payload: {} });
    await waitFor(() => got.length === 1, 'the event');

    await waitFor(() => errors.length === 1, 'the expiry', 10_000);
    expect(errors[0]).toBeInstanceOf(TokenExpiredError);
    expect((errors[0] as TokenExpiredError).lastEventId).toBe(first.seq);
    expect(control.map((m) => m.event)).toEqual(['token_expired']);
    expect(client.status).toBe('closed');
    await sleep(500);
    expect(attempts).toHaveLength(1);

    // Subscribing again with the same, now expired, token fails at once without a request.
    client.subscribe('project.*', () => undefined, { onError: (e) => errors.push(e) });
    await waitFor(() => errors.length === 2, 'the second refusal');
    expect(errors[1]).toBeInstanceOf(TokenExpiredError);
    expect(attempts).toHaveLength(1);
  }, 20_000);

  it('a tampered token is refused with 401', async () => {
    const { token } = await mintToken(bus, { ttlSeconds: 60 });
    const tampered = `${token.slice(0, -4)}${token.slice(-4) === 'AAAA' ? 'BBBB' : 'AAAA'}`;
    const { client } = recordingClient({ token: tampered });
    const errors: Error[] = [];
    client.subscribe('project.*', () => undefined, { onError: (e) => errors.push(e) });
    await waitFor(() => errors.length === 1, 'the refusal');
    expect(errors[0]).toMatchObject({ name: 'ProblemError', status: 401 });
  });
});

describe('tenants', () => {
  it("a tenant-bound key's stream never sees another tenant's events", async () => {
    const keyA = await createKey(bus, { name: 'tenant a', tenantId: 'tenant-a', permissions: ['publish', 'subscribe', 'read'] });
    const keyB = await createKey(bus, { name: 'tenant b', tenantId: 'tenant-b', permissions: ['publish', 'subscribe', 'read'] });
    const clientA = recordingClient({ apiKey: keyA }).client;
    const viaToken = recordingClient({ getToken: async () => (await mintToken(bus, { ttlSeconds: 60 }, keyA)).token }).client;
    const publisherB = new EventBusClient({ url: bus.url, apiKey: keyB, maxRetries: 0 });
    const seenByKey: BusEvent[] = [];
    const seenByToken: BusEvent[] = [];
    clientA.subscribe('project.*', (e) => seenByKey.push(e));
    viaToken.subscribe('project.*', (e) => seenByToken.push(e));
    await waitFor(() => clientA.status === 'open' && viaToken.status === 'open', 'the streams to open');

    const mine: number[] = [];
    for (let n = 1; n <= 4; n++) {
      // Publishing with a tenant-bound key fills in its tenant.
      const a = await clientA.publish({ type: 'project.updated', payload: { n } });
      expect(a.tenantId).toBe('tenant-a');
      mine.push(a.seq);
      const b = await publisherB.publish({ type: 'project.updated', payload: { n: -n } });
      expect(b.tenantId).toBe('tenant-b');
      await admin.publish({ type: 'project.updated', tenantId: 'tenant-b', payload: { n: -10 * n } });
      await admin.publish({ type: 'project.updated', payload: { n: -100 * n } });
    }
    const last = await admin.publish({ type: 'project.updated', tenantId: 'tenant-a', payload: { n: 5 } });
    mine.push(last.seq);
    await waitFor(() => seenByKey.some((e) => e.seq === last.seq) && seenByToken.some((e) => e.seq === last.seq), 'the last event of tenant a');
    // Anything else would have arrived before the last event (the stream is in seq order).
    for (const seen of [seenByKey, seenByToken]) {
      expect(seen.map((e) => e.seq)).toEqual(mine);
      expect(seen.every((e) => e.tenantId === 'tenant-a')).toBe(true);
    }

    // Asking for another tenant's stream is refused, not silently emptied.
    const errors: Error[] = [];
    clientA.subscribe({ types: ['project.*'], tenantId: 'tenant-b' }, () => undefined, { onError: (e) => errors.push(e) });
    await waitFor(() => errors.length === 1, 'the refusal');
    expect(errors[0]).toBeInstanceOf(ProblemError);
    expect((errors[0] as ProblemError).status).toBe(403);
    // Queries are scoped the same way.
    const query: BusEvent[] = [];
    for await (const e of publisherB.queryEvents({ type: 'project.*' })) query.push(e);
    expect(query.length).toBeGreaterThan(0);
    expect(query.every((e) => e.tenantId === 'tenant-b')).toBe(true);
  });
});
