/**
 * SSE over `fetch` streaming: works in Node ≥ 18 and in browsers, and can send `Authorization`
 * and `Last-Event-ID` headers, which `EventSource` cannot.
 */
import { NetworkError, problemFromResponse } from '../errors.js';
import { parseRetryAfter } from '../backoff.js';
import { SseParser } from './sse-parser.js';
import type { StreamRequest, StreamTransport } from './types.js';

/** Options of {@link fetchTransport}. */
export interface FetchTransportOptions {
  fetch?: typeof fetch;
  /** Break and reconnect when nothing (not even a heartbeat) arrived for this long; 0 disables. */
  idleTimeoutMs?: number;
}

export function fetchTransport(options: FetchTransportOptions = {}): StreamTransport {
  return async (req: StreamRequest) => {
    const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    const controller = new AbortController();
    const abort = () => controller.abort();
    if (req.signal.aborted) return;
    req.signal.addEventListener('abort', abort, { once: true });
    let idleTimer: ReturnType<typeof setTimeout> | undefined;
    let idled = false;
    const armIdle = () => {
      if (!options.idleTimeoutMs) return;
      if (idleTimer) clearTimeout(idleTimer);
      idleTimer = setTimeout(() => {
        idled = true;
        controller.abort();
      }, options.idleTimeoutMs);
    };
    try {
      let response: Response;
      try {
        response = await doFetch(req.url, {
          method: 'GET',
          headers: {
            accept: 'text/event-stream',
            ...req.headers,
            ...(req.lastEventId !== null ? { 'last-event-id': String(req.lastEventId) } : {}),
          },
          signal: controller.signal,
        });
      } catch (cause) {
        if (req.signal.aborted) return;
        throw new NetworkError(`cannot reach the stream at ${withoutToken(req.url)}`, { cause });
      }
      if (!response.ok) {
        throw await problemFromResponse(response, parseRetryAfter(response.headers.get('retry-after')));
      }
      if (!response.body) throw new NetworkError('the stream answer has no body');
      req.onOpen();
      armIdle();
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      const parser = new SseParser();
      // A read must not outlive the abort: Node's fetch can leave `read()` pending for good when
      // the request is aborted while no read is in flight (e.g. from `onMessage`, on `lagged` or
      // `token_expired`), so every read races the abort.
      const abortedRead = new Promise<'aborted'>((resolve) => {
        if (controller.signal.aborted) resolve('aborted');
        else controller.signal.addEventListener('abort', () => resolve('aborted'), { once: true });
      });
      try {
        for (;;) {
          if (controller.signal.aborted) {
            if (idled) throw new Error('idle');
            return;
          }
          const result = await Promise.race([reader.read(), abortedRead]);
          if (result === 'aborted') {
            if (idled && !req.signal.aborted) throw new Error('idle');
            return;
          }
          const { done, value } = result;
          if (done) return;
          armIdle();
          for (const message of parser.feed(decoder.decode(value, { stream: true }))) {
            if (req.signal.aborted) return;
            req.onMessage(message);
          }
        }
      } catch (cause) {
        if (req.signal.aborted) return;
        throw new NetworkError(idled ? 'the stream went idle' : 'the stream was interrupted', { cause });
      } finally {
        reader.cancel().catch(() => undefined);
      }
    } finally {
      if (idleTimer) clearTimeout(idleTimer);
      req.signal.removeEventListener('abort', abort);
      controller.abort();
    }
  };
}

/** `url` without its `token` parameter: error messages end up in logs and on pages. */
function withoutToken(url: string): string {
  const u = new URL(url);
  if (!u.searchParams.has('token')) return url;
  u.searchParams.delete('token');
  return u.toString();
}
