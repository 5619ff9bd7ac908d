// Reconnection logic for the bus's control events and refusals, driven by a scripted transport
// (no network: each attempt plays a fixed list of SSE messages, then ends); and the fetch
// transport against a local server that ends a stream right after a control event, as the bus does.
import http from 'node:http';
import { describe, expect, it } from 'vitest';
import { EventBusClient, NetworkError, ProblemError, type BusEvent, type StreamRequest } from '../src/index.js';
import { fetchTransport, type SseMessage } from '../src/transport/index.js';
import { waitFor } from './helpers/bus.js';

function event(seq: number, type = 'project.created'): SseMessage {
  const e = { id: `e${seq}`, type, payload: { seq }, timestamp: '2026-11-27T05:00:00Z', seq };
  return { id: String(seq), event: type, data: JSON.stringify(e) };
}

type Script = (req: StreamRequest) => Promise<void> | void;

function scripted(scripts: Script[]) {
  const attempts: StreamRequest[] = [];
  const client = new EventBusClient({
    url: 'http://127.0.0.1:9',
    token: 'tok',
    reconnectBackoff: { initialDelayMs: 1, maxDelayMs: 5 },
    transport: async (req) => {
      attempts.push(req);
      const script = scripts[attempts.length - 1];
      if (!script) {
        // Park until closed.
        await new Promise<void>((resolve) => req.signal.addEventListener('abort', () => resolve()));
        return;
      }
      await script(req);
    },
  });
  return { client, attempts };
}

const play = (...messages: SseMessage[]): Script => (req) => {
  req.onOpen();
  for (const m of messages) {
    if (req.signal.aborted) return;
    req.onMessage(m);
  }
};

describe('stream control events', () => {
  it('on `lagged` reconnects at once from the last seq; duplicates and older seqs are dropped', async () => {
    const { client, attempts } = scripted([
      play(event(1), event(2), { id: undefined, event: 'lagged', data: '{"lastEventId":2}' }, event(99)),
      play(event(2), event(3)),
    ]);
    const got: BusEvent[] = [];
    client.subscribe('project.*', (e) => got.push(e));
    await waitFor(() => got.length === 3 && attempts.length === 3, 'the replay');
    expect(got.map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(attempts.map((a) => a.lastEventId)).toEqual([null, 2, 3]);
    expect(new URL(attempts[0]!.url).searchParams.get('token')).toBe('tok');
    client.close();
  });

  it('on `lagged` before any event, resumes from the lastEventId it names', async () => {
    const { client, attempts } = scripted([play({ id: undefined, event: 'lagged', data: '{"lastEventId":41}' }), play(event(42))]);
    const got: number[] = [];
    client.subscribe('project.*', (e) => got.push(e.seq));
    await waitFor(() => got.length === 1, 'the event');
    expect(attempts[1]!.lastEventId).toBe(41);
    client.close();
  });

  it('on the `error` control event ends the attempt and retries from the cursor', async () => {
    const { client, attempts } = scripted([play(event(5), { id: undefined, event: 'error', data: '{"detail":"store"}' }, event(6)), play(event(6))]);
    const got: number[] = [];
    client.subscribe('project.*', (e) => got.push(e.seq));
    await waitFor(() => got.length === 2, 'the events');
    expect(got).toEqual([5, 6]);
    expect(attempts[1]!.lastEventId).toBe(5);
    client.close();
  });

  it('retries a 503 after its Retry-After, and refreshes the token on each attempt', async () => {
    let n = 0;
    const attempts: StreamRequest[] = [];
    const client = new EventBusClient({
      url: 'http://127.0.0.1:9',
      getToken: () => `t${++n}`,
      reconnectBackoff: { initialDelayMs: 1, maxDelayMs: 5 },
      transport: async (req) => {
        attempts.push(req);
        if (attempts.length === 1) throw new ProblemError({ type: '/problems/overloaded', title: 'Overloaded', status: 503 }, 30);
        play(event(1))(req);
        await new Promise<void>((resolve) => req.signal.addEventListener('abort', () => resolve()));
      },
    });
    const got: number[] = [];
    client.subscribe('project.*', (e) => got.push(e.seq));
    await waitFor(() => got.length === 1, 'the event');
    expect(attempts.map((a) => new URL(a.url).searchParams.get('token'))).toEqual(['t1', 't2']);
    client.close();
    expect(client.status).toBe('closed');
  });

  it('a throwing handler does not stop the others', async () => {
    const errors: unknown[] = [];
    const attempts: StreamRequest[] = [];
    const client = new EventBusClient({
      url: 'http://127.0.0.1:9',
      onHandlerError: (e) => errors.push(e),
      transport: async (req) => {
        attempts.push(req);
        play(event(1), event(2))(req);
        await new Promise<void>((resolve) => req.signal.addEventListener('abort', () => resolve()));
      },
    });
    const got: number[] = [];
    client.subscribe('project.*', () => {
      throw new Error('boom');
    });
    client.subscribe('project.*', (e) => got.push(e.seq));
    await waitFor(() => got.length === 2, 'the events');
    expect(errors).toHaveLength(2);
    client.close();
  });
});

describe('lastError', () => {
  it('holds why the stream is not open — a failed getToken, then an unreachable bus — until it opens', async () => {
    const tokenFailure = new Error('the backend could not get a stream token: 403');
    const unreachable = new NetworkError('cannot reach the stream');
    let tokenCalls = 0;
    const attempts: StreamRequest[] = [];
    const client = new EventBusClient({
      url: 'http://127.0.0.1:9',
      getToken: () => {
        tokenCalls += 1;
        if (tokenCalls === 1) throw tokenFailure;
        return `t${tokenCalls}`;
      },
      reconnectBackoff: { initialDelayMs: 1, maxDelayMs: 5 },
      transport: async (req) => {
        attempts.push(req);
        if (attempts.length === 1) throw unreachable;
        play(event(1))(req);
        await new Promise<void>((resolve) => req.signal.addEventListener('abort', () => resolve()));
      },
    });
    const seen: (Error | null)[] = [];
    client.onErrorChange((error) => seen.push(error));
    expect(client.lastError).toBeNull();
    const got: number[] = [];
    client.subscribe('project.*', (e) => got.push(e.seq));
    await waitFor(() => got.length === 1, 'the event');
    expect(seen).toEqual([tokenFailure, unreachable, null]);
    expect(client.lastError).toBeNull();
    expect(client.status).toBe('open');
    client.close();
  });

  it('is the latest error among the streams still trying; an open stream has none', async () => {
    const refusal = new ProblemError({ type: '/problems/overloaded', title: 'Overloaded', status: 503 });
    const client = new EventBusClient({
      url: 'http://127.0.0.1:9',
      token: 'tok',
      reconnectBackoff: { initialDelayMs: 1, maxDelayMs: 5 },
      transport: async (req) => {
        if (new URL(req.url).searchParams.get('projectId') === 'down') throw refusal;
        req.onOpen();
        await new Promise<void>((resolve) => req.signal.addEventListener('abort', () => resolve()));
      },
    });
    client.subscribe({ types: ['project.*'], projectId: 'up' }, () => undefined);
    const down = client.subscribe({ types: ['project.*'], projectId: 'down' }, () => undefined);
    await waitFor(() => client.lastError === refusal, 'the error of the failing stream');
    expect(client.status).toBe('reconnecting');
    down.unsubscribe();
    await waitFor(() => client.lastError === null && client.status === 'open', 'the failing stream to go');
    client.close();
  });
});

describe('the fetch transport and a stream that ends after a control event', () => {
  // The bus writes `lagged` or `token_expired` and then ends the response. The connection aborts
  // the attempt from onMessage, before reading the end of the body, which arrived with the last
  // chunk; Node's fetch can then leave the next read() pending for good. The transport must settle anyway (this used to hang the
  // slow-reader test in stream.test.ts).
  it('settles when aborted from onMessage before the end of the body arrives', async () => {
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('id: 1\nevent: project.created\ndata: {}\n\n');
      setTimeout(() => {
        res.write('event: token_expired\ndata: {"lastEventId":"1"}\n\n');
        res.end();
      }, 50);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    try {
      const { port } = server.address() as { port: number };
      const transport = fetchTransport();
      for (let round = 0; round < 3; round++) {
        const controller = new AbortController();
        const seen: string[] = [];
        const attempt = transport({
          url: `http://127.0.0.1:${port}/v1/stream`,
          headers: {},
          lastEventId: null,
          eventNames: [],
          signal: controller.signal,
          onOpen: () => undefined,
          onMessage: (m) => {
            seen.push(m.event);
            if (m.event === 'token_expired') controller.abort();
          },
        });
        const outcome = await Promise.race([
          attempt.then(() => 'settled'),
          new Promise((r) => setTimeout(() => r('still pending'), 3000)),
        ]);
        expect(outcome).toBe('settled');
        expect(seen).toEqual(['project.created', 'token_expired']);
      }
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
