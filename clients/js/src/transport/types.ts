/**
 * What a stream transport is: the request of one connection attempt and the function that runs it.
 */
import type { SseMessage } from './sse-parser.js';

/** One connection attempt. */
export interface StreamRequest {
  /** The full stream URL with its filters (and `token`, when one is used). */
  url: string;
  /** Headers to send where the runtime allows (e.g. `Authorization`). */
  headers: Record<string, string>;
  /** Resume after this `seq`; null to start live. */
  lastEventId: number | null;
  /** Exact event names to listen to, for transports that need them (`EventSource`). */
  eventNames: readonly string[];
  /** Aborting ends the attempt; the transport then resolves. */
  signal: AbortSignal;
  /** The server accepted the stream. */
  onOpen(): void;
  /** One message (an event, or a control event without id). */
  onMessage(message: SseMessage): void;
}

/**
 * Runs one connection attempt. Resolves when the stream ends or `signal` aborts; rejects with a
 * `ProblemError` when the server refuses the stream, or a `NetworkError` when it cannot be reached
 * or the connection breaks.
 */
export type StreamTransport = (request: StreamRequest) => Promise<void>;
