/**
 * `@situs/event-bus-client`: a client of the Situs Event Bus for Node ≥ 18 and browsers.
 *
 * Layout:
 * - `client`     — {@link EventBusClient}: publish, publishBatch, outbox, query, subscribe, consume, getConsumer, status
 * - `outbox`     — the transactional outbox: events inserted in the application's own transaction
 * - `consumer`   — consumer groups: the fetch / ack / nack loop behind `consume`
 * - `stream`     — shared SSE connections: multiplexing, resume by `seq`, reconnection
 * - `transport/` — one SSE connection attempt over `fetch` streaming or `EventSource`
 * - `pattern`    — type patterns (`*`, `>`) with the bus's semantics
 * - `event-types`— the generated catalogue: `EventType`, `EventPayloadMap`
 * - `errors`     — `ProblemError` (the bus's problem+json), `NetworkError`, `TokenExpiredError`
 * - `backoff`, `uuid` — retry spacing; UUIDv7 ids
 * - `react/` (subpath `@situs/event-bus-client/react`) — provider and hooks
 * - `legacy/` (subpath `@situs/event-bus-client/legacy`) — `RealtimeEventsService`
 * - `codegen/`   — JSON Schema → TypeScript, the `gen-types` script
 */
export { EventBusClient, type EventBusClientOptions } from './client.js';
export type { Subscription, SubscribeOptions } from './stream.js';
export {
  createOutbox,
  DEFAULT_OUTBOX_SCHEMA,
  outboxInsert,
  publishInTransaction,
  type OutboxEvent,
  type OutboxExecutor,
  type OutboxOptions,
  type OutboxPublisher,
  type OutboxStatement,
  type PrismaRawExecutor,
  type SqlQueryable,
} from './outbox.js';
export type {
  ConsumedMessage,
  ConsumeHandler,
  ConsumeOptions,
  ConsumerInfo,
  ConsumerSettings,
  Consumption,
} from './consumer.js';
export {
  EventBusError,
  NetworkError,
  ProblemError,
  problemFromResponse,
  TokenExpiredError,
  type Problem,
  type ProblemFieldError,
} from './errors.js';
export * from './event-types.js';
export { isValidPattern, matchPattern, matchAny, patternCovers } from './pattern.js';
export { backoffDelay, parseRetryAfter, type BackoffOptions } from './backoff.js';
export { uuidv7, uuidv7Timestamp } from './uuid.js';
export type { StreamTransport, StreamRequest } from './transport/index.js';
export type {
  BusEvent,
  ConnectionStatus,
  EventInput,
  EventMetadata,
  EventOf,
  EventPage,
  EventTypeInfo,
  PayloadOf,
  QueryFilters,
  Readiness,
  StreamFilter,
} from './types.js';
