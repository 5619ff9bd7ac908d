// Stream test helpers over the real fetch transport: a transport that records each connection
// attempt (with when it started) and every message as the bus sent it, and a `fetch` whose
// response bodies are read only while a gate is open — a slow reader, with TCP back-pressure
// doing the rest (nothing is simulated on the bus side).
import { fetchTransport, type SseMessage } from '../../src/transport/index.js';
import type { StreamRequest, StreamTransport } from '../../src/index.js';

/** One connection attempt as the client made it. */
export interface RecordedAttempt {
  request: StreamRequest;
  /** `Date.now()` when the attempt started. */
  at: number;
  /** The stream token it used (`?token=`), if any. */
  token: string | null;
}

/** A message as the bus sent it, the attempt (index into `attempts`) it came on, and when. */
export interface RecordedMessage {
  message: SseMessage;
  attempt: number;
  at: number;
}

export interface Recorder {
  transport: StreamTransport;
  attempts: RecordedAttempt[];
  messages: RecordedMessage[];
  /** The control messages (no `id:`), in order. */
  control(): RecordedMessage[];
}

/** Wraps the real fetch transport (over `fetchImpl` when given) and records what goes through it. */
export function recordingTransport(fetchImpl?: typeof fetch): Recorder {
  const inner = fetchTransport(fetchImpl ? { fetch: fetchImpl } : {});
  const attempts: RecordedAttempt[] = [];
  const messages: RecordedMessage[] = [];
  const transport: StreamTransport = (request) => {
    const attempt = attempts.length;
    attempts.push({ request, at: Date.now(), token: new URL(request.url).searchParams.get('token') });
    return inner({
      ...request,
      onMessage: (message) => {
        messages.push({ message, attempt, at: Date.now() });
        request.onMessage(message);
      },
    });
  };
  return { transport, attempts, messages, control: () => messages.filter((m) => m.message.id === undefined) };
}

/** A gate: while closed, response bodies of `gatedFetch` are not read. */
export interface Gate {
  open: boolean;
  waiters: (() => void)[];
}

export function gate(): Gate {
  return { open: true, waiters: [] };
}

export function openGate(g: Gate): void {
  g.open = true;
  for (const wake of g.waiters.splice(0)) wake();
}

/** A `fetch` whose response bodies are read only while `g` is open. */
export function gatedFetch(g: Gate): typeof fetch {
  return async (input, init) => {
    const res = await fetch(input, init);
    if (!res.body) return res;
    const reader = res.body.getReader();
    const body = new ReadableStream<Uint8Array>(
      {
        async pull(controller) {
          while (!g.open) await new Promise<void>((r) => g.waiters.push(r));
          const { done, value } = await reader.read();
          if (done) controller.close();
          else controller.enqueue(value);
        },
        cancel: (reason) => reader.cancel(reason),
      },
      { highWaterMark: 0 },
    );
    return new Response(body, { status: res.status, headers: res.headers });
  };
}

/** The JSON `data` of a message. */
export function dataOf(m: RecordedMessage): Record<string, unknown> {
  return JSON.parse(m.message.data) as Record<string, unknown>;
}
