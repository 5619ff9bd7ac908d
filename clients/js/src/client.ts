/**
 * `EventBusClient`: publishes, queries, subscribes and consumes over the bus's HTTP API.
 *
 * Publishing retries `429`, `503`, a load balancer's `502` and `504` (the node behind it died or
 * did not answer in time) and network failures with exponential backoff and jitter, honouring
 * `Retry-After`. That is safe because the client gives every event a UUIDv7 `id`
 * before the first attempt: the bus stores an id once and answers a repeat with the stored event.
 */
import { backoffDelay, parseRetryAfter, sleep, type BackoffOptions } from './backoff.js';
import {
  ConsumerLoop,
  type ConsumeHandler,
  type ConsumeOptions,
  type ConsumerInfo,
  type Consumption,
} from './consumer.js';
import { EventBusError, NetworkError, ProblemError, problemFromResponse } from './errors.js';
import { EventType } from './event-types.js';
import { createOutbox, type OutboxExecutor, type OutboxOptions, type OutboxPublisher } from './outbox.js';
import { isValidPattern } from './pattern.js';
import { scopeKey, StreamConnection, type SubscribeOptions, type Subscription } from './stream.js';
import { eventSourceTransport, fetchTransport, type StreamTransport } from './transport/index.js';
import type {
  BusEvent,
  ConnectionStatus,
  EventInput,
  EventOf,
  EventPage,
  EventTypeInfo,
  QueryFilters,
  Readiness,
  StreamFilter,
} from './types.js';
import { uuidv7 } from './uuid.js';

/** Answers worth another attempt: busy (`429`, `503`), or a gateway's `502`/`504` for a node
 * that died or did not answer; the request may have been carried out, which a retry with the
 * same event ids makes harmless. */
const RETRIED_STATUSES = new Set([429, 502, 503, 504]);

/** Options of {@link EventBusClient}. */
export interface EventBusClientOptions {
  /** The bus base URL, e.g. `http://127.0.0.1:3002`. */
  url: string;
  /** An API key, sent as `Authorization: Bearer <key>` wherever headers can be set. */
  apiKey?: string;
  /**
   * A stream token (from `POST /v1/tokens`), sent as `?token=` on the stream; the bus accepts it
   * on `GET /v1/stream` only. When it expires the stream ends with a {@link TokenExpiredError}
   * (to the subscriptions' `onError`): prefer `getToken` for streams that outlive a token.
   */
  token?: string;
  /**
   * Called before each stream connection for a fresh token (typically a call to the application's
   * backend, which mints it with its API key); wins over `token`. When a token expires the stream
   * reconnects with a new one and resumes after the last event, without gap or duplicate.
   */
  getToken?: () => string | Promise<string>;
  /**
   * How streams are read: `fetch` (streaming body; sends headers), `eventsource` (native
   * `EventSource`; token and cursor in the query), or `auto` (default): `fetch` where it can
   * stream, else `EventSource`. A custom {@link StreamTransport} is accepted too.
   */
  transport?: 'auto' | 'fetch' | 'eventsource' | StreamTransport;
  /** A `fetch` implementation (default: the global one). */
  fetch?: typeof fetch;
  /** Retries of a publish or query on `429`, `503` or a network failure (default 5). */
  maxRetries?: number;
  /** Spacing of publish retries (default 250 ms doubling up to 10 s). */
  retryBackoff?: BackoffOptions;
  /** Spacing of stream reconnections (default 250 ms doubling up to 10 s). */
  reconnectBackoff?: BackoffOptions;
  /** Reconnect a stream silent (no event, no heartbeat) for this long; 0 disables (default 90 s). */
  idleTimeoutMs?: number;
  /** Types known to exist, for `EventSource` listeners (default: the built-in catalogue). */
  knownTypes?: readonly string[];
  /** Where errors thrown by subscription handlers go (default: `console.error`). */
  onHandlerError?: (error: unknown) => void;
}

type StatusListener = (status: ConnectionStatus) => void;
type ErrorListener = (error: Error | null) => void;

function canStreamFetch(): boolean {
  return typeof globalThis.fetch === 'function' && typeof ReadableStream !== 'undefined';
}

function toIso(value: string | Date | undefined): string | undefined {
  if (value === undefined) return undefined;
  return value instanceof Date ? value.toISOString() : value;
}

export class EventBusClient {
  readonly url: string;
  private readonly options: EventBusClientOptions;
  private readonly doFetch: typeof fetch;
  private readonly transport: StreamTransport;
  private readonly connections = new Map<string, StreamConnection>();
  private readonly statusListeners = new Set<StatusListener>();
  private lastStatus: ConnectionStatus = 'closed';
  private readonly errorListeners = new Set<ErrorListener>();
  private lastEmittedError: Error | null = null;

  constructor(options: EventBusClientOptions) {
    if (!options?.url) throw new EventBusError('EventBusClient needs a `url`');
    this.options = options;
    this.url = options.url.replace(/\/+$/, '');
    const f = options.fetch ?? globalThis.fetch;
    this.doFetch = (input, init) => f(input, init);
    this.transport = this.pickTransport(options.transport ?? 'auto');
  }

  private pickTransport(choice: NonNullable<EventBusClientOptions['transport']>): StreamTransport {
    if (typeof choice === 'function') return choice;
    const fetchOne = () => fetchTransport({ fetch: this.doFetch, idleTimeoutMs: this.options.idleTimeoutMs ?? 90_000 });
    if (choice === 'fetch') return fetchOne();
    if (choice === 'eventsource') return eventSourceTransport();
    return canStreamFetch() || !('EventSource' in globalThis) ? fetchOne() : eventSourceTransport();
  }

  private headers(json = false): Record<string, string> {
    return {
      ...(json ? { 'content-type': 'application/json' } : {}),
      ...(this.options.apiKey ? { authorization: `Bearer ${this.options.apiKey}` } : {}),
    };
  }

  /** Sends a request once: the response when it is a success, else a `ProblemError` or `NetworkError`. */
  private async send(path: string, init: RequestInit): Promise<Response> {
    let response: Response;
    try {
      response = await this.doFetch(`${this.url}${path}`, init);
    } catch (cause) {
      throw new NetworkError(`cannot reach the event bus at ${this.url}`, { cause });
    }
    if (response.ok) return response;
    throw await problemFromResponse(response, parseRetryAfter(response.headers.get('retry-after')));
  }

  /** Sends a request, retrying 429/502/503/504/network failures; returns the successful response. */
  private async request(path: string, init: RequestInit = {}): Promise<Response> {
    const maxRetries = this.options.maxRetries ?? 5;
    for (let attempt = 0; ; attempt++) {
      let response: Response;
      try {
        response = await this.doFetch(`${this.url}${path}`, init);
      } catch (cause) {
        if (attempt >= maxRetries || (init.signal && init.signal.aborted)) {
          throw new NetworkError(`cannot reach the event bus at ${this.url}`, { cause });
        }
        await sleep(backoffDelay(attempt, this.options.retryBackoff));
        continue;
      }
      if (response.ok) return response;
      const retryAfter = parseRetryAfter(response.headers.get('retry-after'));
      if (RETRIED_STATUSES.has(response.status) && attempt < maxRetries) {
        await response.body?.cancel().catch(() => undefined);
        await sleep(Math.max(retryAfter ?? 0, backoffDelay(attempt, this.options.retryBackoff)));
        continue;
      }
      throw await problemFromResponse(response, retryAfter);
    }
  }

  private prepare<T extends string>(event: EventInput<T>): Record<string, unknown> {
    const { timestamp, ...rest } = event;
    return {
      ...rest,
      id: event.id ?? uuidv7(),
      ...(timestamp !== undefined ? { timestamp: toIso(timestamp) } : {}),
    };
  }

  /** Publishes one event; resolves to the stored event (with `seq`). */
  async publish<T extends string>(event: EventInput<T>): Promise<EventOf<T>> {
    const body = JSON.stringify(this.prepare(event));
    const response = await this.request('/v1/events', { method: 'POST', headers: this.headers(true), body });
    return (await response.json()) as EventOf<T>;
  }

  /** Publishes events atomically (all or none); resolves to the stored events in order. */
  async publishBatch(events: readonly EventInput[]): Promise<BusEvent[]> {
    const body = JSON.stringify(events.map((e) => this.prepare(e)));
    const response = await this.request('/v1/events', { method: 'POST', headers: this.headers(true), body });
    return (await response.json()) as BusEvent[];
  }

  /**
   * Publishes through the transactional outbox instead of HTTP: the events are inserted into the
   * `outbox` table of the application's own database through `executor` — a node-postgres client
   * in the caller's transaction, a Prisma interactive transaction, or a pool or Prisma client for
   * a statement of its own — and the bus relays them once that commits (see `outbox.ts`).
   */
  outbox(executor: OutboxExecutor, options?: OutboxOptions): OutboxPublisher {
    return createOutbox(executor, options);
  }

  /** One event by id, or null when the bus has none. */
  async getEvent(id: string): Promise<BusEvent | null> {
    try {
      const response = await this.request(`/v1/events/${encodeURIComponent(id)}`, { headers: this.headers() });
      return (await response.json()) as BusEvent;
    } catch (error) {
      if (error instanceof ProblemError && error.status === 404) return null;
      throw error;
    }
  }

  /**
   * The pages of a query, following `nextAfter` until the last one:
   * `for await (const page of client.query({ type: 'project.*' })) …`.
   */
  async *query(filters: QueryFilters = {}): AsyncGenerator<EventPage, void, undefined> {
    let after = filters.after;
    for (;;) {
      const params = new URLSearchParams();
      if (filters.type !== undefined) {
        params.set('type', typeof filters.type === 'string' ? filters.type : filters.type.join(','));
      }
      for (const key of ['projectId', 'tenantId', 'userId'] as const) {
        const value = filters[key];
        if (value !== undefined) params.set(key, value);
      }
      const from = toIso(filters.from);
      const to = toIso(filters.to);
      if (from) params.set('from', from);
      if (to) params.set('to', to);
      if (after !== undefined) params.set('after', String(after));
      if (filters.limit !== undefined) params.set('limit', String(filters.limit));
      if (filters.includeArchived) params.set('includeArchived', 'true');
      const qs = params.toString();
      const response = await this.request(`/v1/events${qs ? `?${qs}` : ''}`, { headers: this.headers() });
      const page = (await response.json()) as EventPage;
      yield page;
      if (page.nextAfter === null || page.nextAfter === undefined) return;
      after = page.nextAfter;
    }
  }

  /** Every event a query selects, page after page. */
  async *queryEvents(filters: QueryFilters = {}): AsyncGenerator<BusEvent, void, undefined> {
    for await (const page of this.query(filters)) yield* page.events;
  }

  /** The catalogue (`GET /v1/event-types`). */
  async listEventTypes(): Promise<EventTypeInfo[]> {
    const response = await this.request('/v1/event-types', { headers: this.headers() });
    const body = (await response.json()) as { eventTypes: EventTypeInfo[] };
    return body.eventTypes;
  }

  /**
   * Subscribes to live events. Either one type (`subscribe('project.updated', e => …)`, typed by
   * `EventPayloadMap`) or a filter (`subscribe({ types: ['project.*'], projectId: 'p1' }, …)`).
   * Subscriptions with the same `projectId`/`tenantId`/`userId` share one connection.
   */
  subscribe<T extends string>(type: T, handler: (event: EventOf<T>) => void, options?: SubscribeOptions): Subscription;
  subscribe<T extends string>(
    filter: StreamFilter<T>,
    handler: (event: EventOf<T>) => void,
    options?: SubscribeOptions,
  ): Subscription;
  subscribe(
    filterOrType: string | StreamFilter,
    handler: (event: BusEvent) => void,
    options: SubscribeOptions = {},
  ): Subscription {
    const filter: StreamFilter = typeof filterOrType === 'string' ? { types: [filterOrType] } : filterOrType;
    for (const p of filter.types ?? []) {
      if (!isValidPattern(p)) throw new EventBusError(`invalid type pattern: ${JSON.stringify(p)}`);
    }
    const key = scopeKey(filter, options.after);
    let connection = this.connections.get(key);
    if (!connection) {
      const created: StreamConnection = new StreamConnection(
        {
          baseUrl: this.url,
          transport: this.transport,
          headers: () => this.headers(),
          token: async () => (this.options.getToken ? await this.options.getToken() : this.options.token),
          refreshableToken: this.options.getToken !== undefined,
          knownTypes: () => this.options.knownTypes ?? Object.values(EventType),
          backoff: this.options.reconnectBackoff ?? {},
          onStatusChange: () => {
            this.emitStatus();
            // `lastError` counts only streams that are not open.
            this.emitError();
          },
          onErrorChange: () => this.emitError(),
          onHandlerError: this.options.onHandlerError ?? ((error) => console.error('event bus subscription:', error)),
        },
        { projectId: filter.projectId, tenantId: filter.tenantId, userId: filter.userId },
        options.after,
        () => {
          if (this.connections.get(key) === created) this.connections.delete(key);
          this.emitStatus();
          this.emitError();
        },
      );
      connection = created;
      this.connections.set(key, connection);
    }
    const subscription = connection.add(filter, handler, options.onError);
    this.emitStatus();
    return subscription;
  }

  /**
   * Consumes the consumer group `name` (`/v1/consumers/{name}`): fetches with long-poll, runs
   * `handler` on each message with at most `concurrency` at once, acks when it resolves and nacks
   * with a growing delay when it throws; reconnects through outages. Loops on one consumer, here
   * or in other processes, share its work. `create` puts the consumer's settings first. Typed like
   * `subscribe`: `consume<'project.created'>('mailer', (e) => e.payload.name)`.
   * `await consumption.close()` stops fetching and lets running handlers finish.
   */
  consume<T extends string = string>(
    name: string,
    handler: ConsumeHandler<EventOf<T>>,
    options: ConsumeOptions<T> = {},
  ): Consumption {
    return new ConsumerLoop(
      {
        send: (path, init) => this.send(path, init),
        headers: () => this.headers(true),
        reconnectBackoff: this.options.reconnectBackoff ?? {},
        onHandlerError: this.options.onHandlerError ?? ((error) => console.error('event bus consumer:', error)),
      },
      name,
      handler as ConsumeHandler,
      options as ConsumeOptions,
    );
  }

  /**
   * The bus's readiness (`GET /health/ready`, one request, no retries): `ok` is true with `200`,
   * false with `503` (a dependency is down; `error` names it). Throws a `NetworkError` when the
   * bus cannot be reached and a `ProblemError` for any other answer (`401` without an admin key
   * when the bus runs with `HEALTH_METRICS_PUBLIC=false`).
   */
  async readiness(signal?: AbortSignal): Promise<Readiness> {
    let response: Response;
    try {
      response = await this.doFetch(`${this.url}/health/ready`, { headers: this.headers(), ...(signal ? { signal } : {}) });
    } catch (cause) {
      throw new NetworkError(`cannot reach the event bus at ${this.url}`, { cause });
    }
    if (response.status !== 200 && response.status !== 503) throw await problemFromResponse(response);
    const body = (await response.json()) as Omit<Readiness, 'ok'>;
    return { ...body, ok: response.status === 200 };
  }

  /** A consumer group's settings and state (`GET /v1/consumers/{name}`), or null when the bus has none. */
  async getConsumer(name: string): Promise<ConsumerInfo | null> {
    try {
      const response = await this.request(`/v1/consumers/${encodeURIComponent(name)}`, { headers: this.headers() });
      return (await response.json()) as ConsumerInfo;
    } catch (error) {
      if (error instanceof ProblemError && error.status === 404) return null;
      throw error;
    }
  }

  /**
   * The state of the client's streams: `closed` with none; else the least healthy one
   * (`reconnecting` before `connecting` before `open`).
   */
  get status(): ConnectionStatus {
    const states = [...this.connections.values()].map((c) => c.status);
    if (states.length === 0) return 'closed';
    if (states.includes('reconnecting')) return 'reconnecting';
    if (states.includes('connecting')) return 'connecting';
    if (states.includes('open')) return 'open';
    return 'closed';
  }

  /** Calls `listener` on every status change; returns the function that stops it. */
  onStatusChange(listener: StatusListener): () => void {
    this.statusListeners.add(listener);
    return () => {
      this.statusListeners.delete(listener);
    };
  }

  private emitStatus() {
    const status = this.status;
    if (status === this.lastStatus) return;
    this.lastStatus = status;
    for (const listener of [...this.statusListeners]) listener(status);
  }

  /**
   * Why the client's streams are not all open: the latest error of a stream that is still trying
   * (connecting or reconnecting) — a failed `getToken`, an unreachable bus, a refusal being
   * retried, a broken stream — or null. A stream clears its error when it opens; one that stops
   * for good gives its error to the subscriptions' `onError` and leaves this list.
   */
  get lastError(): Error | null {
    let latest: StreamConnection | undefined;
    for (const connection of this.connections.values()) {
      if (!connection.lastError || connection.status === 'open' || connection.status === 'closed') continue;
      if (!latest || connection.lastErrorOrder > latest.lastErrorOrder) latest = connection;
    }
    return latest?.lastError ?? null;
  }

  /** Calls `listener` whenever {@link lastError} changes; returns the function that stops it. */
  onErrorChange(listener: ErrorListener): () => void {
    this.errorListeners.add(listener);
    return () => {
      this.errorListeners.delete(listener);
    };
  }

  private emitError() {
    const error = this.lastError;
    if (error === this.lastEmittedError) return;
    this.lastEmittedError = error;
    for (const listener of [...this.errorListeners]) listener(error);
  }

  /** Closes every stream. Publishing keeps working. */
  close(): void {
    for (const connection of [...this.connections.values()]) connection.close();
    this.connections.clear();
    this.emitStatus();
    this.emitError();
  }
}
