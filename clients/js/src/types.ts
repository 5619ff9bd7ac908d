/** The wire format of events and the shapes of the client's options and filters. */
import type { EventPayloadMap } from './event-types.js';

/** Metadata carried by an event (DESIGN §2). */
export interface EventMetadata {
  correlationId?: string;
  causationId?: string;
  source?: string;
  traceparent?: string;
  [key: string]: unknown;
}

/** The payload type of event type `T`: from {@link EventPayloadMap} when known, else `unknown`. */
export type PayloadOf<T extends string> = T extends keyof EventPayloadMap ? EventPayloadMap[T] : unknown;

/** An event as the bus stores and delivers it. */
export interface BusEvent<P = unknown, T extends string = string> {
  id: string;
  type: T;
  payload: P;
  timestamp: string;
  projectId?: string;
  tenantId?: string;
  userId?: string;
  metadata?: EventMetadata;
  /** The global position assigned by the store: strictly increasing. */
  seq: number;
}

/**
 * The event received for a subscription to `T`: for a union of known types, a union of events
 * discriminated by `type`; for patterns and unknown types, a {@link BusEvent} with `unknown` payload.
 */
export type EventOf<T extends string> = T extends keyof EventPayloadMap
  ? BusEvent<EventPayloadMap[T], T>
  : BusEvent<unknown, string>;

/** An event to publish. `id` (UUIDv7) and `timestamp` are filled in when absent. */
export interface EventInput<T extends string = string> {
  id?: string;
  type: T;
  payload: PayloadOf<T>;
  timestamp?: string | Date;
  projectId?: string;
  tenantId?: string;
  userId?: string;
  metadata?: EventMetadata;
}

/** Filters of `GET /v1/events`. */
export interface QueryFilters {
  /** A pattern or a list of patterns. */
  type?: string | readonly string[];
  projectId?: string;
  tenantId?: string;
  userId?: string;
  /** Inclusive lower bound of `timestamp`. */
  from?: string | Date;
  /** Exclusive upper bound of `timestamp`. */
  to?: string | Date;
  /** Start after this `seq`. */
  after?: number;
  /** Page size, 1 to 1000 (default 100). */
  limit?: number;
  /** Also archived events (slower; same filters and paging). */
  includeArchived?: boolean;
}

/** One page of a query. */
export interface EventPage {
  events: BusEvent[];
  /** Pass as `after` for the next page; null on the last page. */
  nextAfter: number | null;
}

/** What a stream subscription selects. Subscriptions with the same scope share one connection. */
export interface StreamFilter<T extends string = string> {
  /** Patterns (default: every type). */
  types?: readonly T[];
  projectId?: string;
  tenantId?: string;
  userId?: string;
}

/** The state of a streaming connection. */
export type ConnectionStatus = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** The answer of `GET /health/ready`: one entry per dependency (`store`, `consumers`, …). */
export interface Readiness {
  /** True when the bus answered `200`. */
  ok: boolean;
  status: 'ok' | 'error';
  info?: Record<string, { status: string; [key: string]: unknown }>;
  error?: Record<string, { status: string; [key: string]: unknown }>;
  details?: Record<string, { status: string; [key: string]: unknown }>;
}

/** An entry of the catalogue, `GET /v1/event-types`. */
export interface EventTypeInfo {
  type: string;
  description?: string | null;
  schema?: unknown;
  builtin?: boolean;
  updatedAt?: string;
}
