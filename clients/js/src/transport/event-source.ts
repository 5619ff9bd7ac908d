/**
 * SSE over the browser's native `EventSource`, for runtimes where `fetch` cannot stream. It cannot
 * send headers, so authentication uses the `token` query parameter and the resume cursor the
 * `lastEventId` query parameter. The native reconnection is not used: the first error ends the
 * attempt, and the connection reconnects with a fresh token and its own cursor.
 *
 * `EventSource` only reports named events it has a listener for, so this transport listens to the
 * exact names in `eventNames` (the catalogue types selected by the subscription patterns).
 */
import { NetworkError } from '../errors.js';
import type { StreamRequest, StreamTransport } from './types.js';

interface EventSourceLike {
  readonly readyState: number;
  addEventListener(type: string, listener: (event: Event) => void): void;
  close(): void;
}
type EventSourceConstructor = new (url: string) => EventSourceLike;

export function eventSourceTransport(options: { EventSource?: EventSourceConstructor } = {}): StreamTransport {
  return (req: StreamRequest) =>
    new Promise<void>((resolve, reject) => {
      const Ctor = options.EventSource ?? (globalThis as { EventSource?: EventSourceConstructor }).EventSource;
      if (!Ctor) {
        reject(new NetworkError('EventSource is not available in this runtime'));
        return;
      }
      if (req.signal.aborted) {
        resolve();
        return;
      }
      const url = new URL(req.url);
      if (req.lastEventId !== null) url.searchParams.set('lastEventId', String(req.lastEventId));
      const source = new Ctor(url.toString());
      let settled = false;
      const finish = (error?: Error) => {
        if (settled) return;
        settled = true;
        source.close();
        req.signal.removeEventListener('abort', onAbort);
        if (error) reject(error);
        else resolve();
      };
      const onAbort = () => finish();
      req.signal.addEventListener('abort', onAbort, { once: true });

      source.addEventListener('open', () => req.onOpen());
      const forward = (name: string) => (event: Event) => {
        const e = event as MessageEvent<string>;
        if (settled || typeof e.data !== 'string') return;
        // A control event has no `id:`; the browser then repeats the previous lastEventId, so the
        // id is taken from the event JSON by the connection, never from here.
        req.onMessage({ id: undefined, event: name, data: e.data });
      };
      for (const name of new Set([...req.eventNames, 'lagged', 'token_expired', 'message'])) {
        source.addEventListener(name, forward(name));
      }
      // `error` is both the server's control event (a MessageEvent with data) and the
      // connection failure (a plain Event).
      source.addEventListener('error', (event: Event) => {
        const data = (event as MessageEvent<unknown>).data;
        if (typeof data === 'string') {
          req.onMessage({ id: undefined, event: 'error', data });
          return;
        }
        finish(new NetworkError('the EventSource connection failed'));
      });
    });
}
