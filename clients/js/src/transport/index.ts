/**
 * Stream transports: one SSE connection attempt each. A transport opens `GET /v1/stream`, reports
 * the messages, and settles when the connection ends — it never reconnects by itself; the
 * {@link ../stream.ts} connection owns reconnection and the resume cursor.
 */
export type { StreamRequest, StreamTransport } from './types.js';
export { fetchTransport } from './fetch.js';
export { eventSourceTransport } from './event-source.js';
export { SseParser, type SseMessage } from './sse-parser.js';
