/**
 * Streaming subscriptions over `GET /v1/stream`.
 *
 * One {@link StreamConnection} per scope (`projectId`, `tenantId`, `userId`, start cursor) carries
 * every subscription of that scope: it asks the server for the union of their type patterns and
 * dispatches each event locally to the subscriptions whose patterns select it (the same pattern
 * semantics as the bus).
 *
 * Guarantees, per connection:
 * - **Resume without gaps or duplicates.** The connection remembers the `seq` of the last event it
 *   dispatched and reconnects with it (`Last-Event-ID` header, or `lastEventId` query); the bus
 *   replays every stored matching event after it, in order. An event whose `seq` is not above
 *   the cursor is dropped, so a handler never sees one twice.
 * - **Reconnection** after any break (server restart, network error, `error` control event) with
 *   exponential backoff and jitter, honouring `Retry-After` on `503`/`429`; on a `lagged` control
 *   event at once, from its `lastEventId`. The `error` event with `code: "cursor_archived"` (events
 *   after the cursor were archived and are not replayed) is a notice: the stream goes on.
 * - **Tokens.** On a `token_expired` control event (a stream opened with `?token=` outlived its
 *   token) the connection reconnects at once with a fresh token from `getToken`, resuming like
 *   after `lagged`. With a static `token` it cannot: it closes and reports a `TokenExpiredError`.
 *   A refusal that reconnecting does not fix (`400`, `403`, `404`, and `401` unless a fresh token
 *   may help) closes the connection and goes to the subscriptions' `onError`.
 * - **Why it is not open.** `lastError` holds the error that ended the latest attempt (a failed
 *   `getToken`, an unreachable bus, a refusal, a broken stream) until the connection opens again.
 * - A connection starts live (from the moment it opens) unless a subscription asks for `after`.
 *   Widening the pattern set of a connection that has not yet received any event reopens it live.
 */
import { backoffDelay, sleep, type BackoffOptions } from './backoff.js';
import { ProblemError, TokenExpiredError } from './errors.js';
import { matchAny, patternsCover, unionPatterns } from './pattern.js';
import type { StreamTransport } from './transport/index.js';
import type { SseMessage } from './transport/sse-parser.js';
import type { BusEvent, ConnectionStatus, StreamFilter } from './types.js';

/** A live subscription; `unsubscribe()` stops delivery and closes the connection when it was the last one. */
export interface Subscription {
  unsubscribe(): void;
  /** The state of the connection carrying this subscription. */
  readonly status: ConnectionStatus;
}

/** Options of one subscription. */
export interface SubscribeOptions {
  /** Replay stored events after this `seq` first (a subscription with `after` gets its own connection). */
  after?: number;
  /** Called when the stream fails in a way that reconnecting does not fix (e.g. `400` for a bad filter). */
  onError?: (error: Error) => void;
}

/** What a connection needs from its client. */
export interface ConnectionContext {
  baseUrl: string;
  transport: StreamTransport;
  headers: () => Record<string, string>;
  token: () => Promise<string | undefined>;
  /** Whether `token()` can give a new token (`getToken`), rather than always the same one. */
  refreshableToken: boolean;
  knownTypes: () => readonly string[];
  backoff: BackoffOptions;
  onStatusChange: () => void;
  /** The connection's `lastError` changed. */
  onErrorChange: () => void;
  onHandlerError: (error: unknown) => void;
}

interface Sub {
  patterns: string[];
  handler: (event: BusEvent) => void;
  onError: ((error: Error) => void) | undefined;
  active: boolean;
}

const EVERYTHING = ['>'];

/** Orders the errors of all connections, so a client can tell which one is the latest. */
let errorCounter = 0;

/** The key of the connection that can carry a subscription. */
export function scopeKey(filter: StreamFilter, after?: number): string {
  return JSON.stringify([filter.projectId ?? null, filter.tenantId ?? null, filter.userId ?? null, after ?? null]);
}

export class StreamConnection {
  readonly subs = new Set<Sub>();
  private patterns: string[] = [];
  private lastSeq: number | null;
  private controller: AbortController | undefined;
  private wake: (() => void) | undefined;
  private running = false;
  private closed = false;
  private everOpened = false;
  private startScheduled = false;
  /** Set when the pattern set widened: the loop reopens at once instead of backing off. */
  private restart = false;
  private _status: ConnectionStatus = 'connecting';
  private _lastError: Error | null = null;
  private _lastErrorOrder = 0;

  constructor(
    private readonly ctx: ConnectionContext,
    private readonly scope: StreamFilter,
    after: number | undefined,
    private readonly onEmpty: () => void,
  ) {
    this.lastSeq = after ?? null;
  }

  get status(): ConnectionStatus {
    return this._status;
  }

  /**
   * The error that ended the latest connection attempt, or null: cleared when the stream opens.
   * A refusal that closes the connection stays here too (and goes to `onError`).
   */
  get lastError(): Error | null {
    return this._lastError;
  }

  /** Increases with every new `lastError`, across connections: the latest is the highest. */
  get lastErrorOrder(): number {
    return this._lastErrorOrder;
  }

  /** The `seq` of the last event dispatched. */
  get cursor(): number | null {
    return this.lastSeq;
  }

  add(filter: StreamFilter, handler: (event: BusEvent) => void, onError?: (error: Error) => void): Subscription {
    const sub: Sub = {
      patterns: filter.types && filter.types.length > 0 ? [...filter.types] : EVERYTHING,
      handler,
      onError,
      active: true,
    };
    this.subs.add(sub);
    this.scheduleStart();
    const connection = this;
    return {
      unsubscribe: () => {
        if (!sub.active) return;
        sub.active = false;
        this.subs.delete(sub);
        if (this.subs.size === 0) {
          // Close on the next tick, so that an immediate re-subscribe (React StrictMode mounts
          // effects twice) keeps the connection and its cursor.
          setTimeout(() => {
            if (this.subs.size === 0) this.close();
          }, 0);
        }
      },
      get status() {
        return sub.active ? connection.status : 'closed';
      },
    };
  }

  /** Closes the connection for good. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.controller?.abort();
    this.wake?.();
    this.setStatus('closed');
    this.onEmpty();
  }

  private setStatus(status: ConnectionStatus) {
    if (this._status === status) return;
    this._status = status;
    this.ctx.onStatusChange();
  }

  private setError(error: Error | null) {
    if (this._lastError === error) return;
    this._lastError = error;
    if (error) this._lastErrorOrder = ++errorCounter;
    this.ctx.onErrorChange();
  }

  private scheduleStart() {
    if (this.startScheduled) return;
    this.startScheduled = true;
    // Gather the subscriptions made in the same tick into one request.
    queueMicrotask(() => {
      this.startScheduled = false;
      if (this.closed) return;
      const wanted = unionPatterns([], [...this.subs].flatMap((s) => s.patterns));
      if (!this.running) {
        this.patterns = wanted;
        this.running = true;
        void this.loop();
      } else if (!patternsCover(this.patterns, wanted)) {
        // Reopen with the wider set, resuming from the cursor.
        this.patterns = unionPatterns(this.patterns, wanted);
        this.restart = true;
        this.controller?.abort();
        this.wake?.();
      }
    });
  }

  private streamUrl(token: string | undefined): string {
    const url = new URL(`${this.ctx.baseUrl}/v1/stream`);
    if (!(this.patterns.length === 1 && this.patterns[0] === '>')) url.searchParams.set('types', this.patterns.join(','));
    if (this.scope.projectId !== undefined) url.searchParams.set('projectId', this.scope.projectId);
    if (this.scope.tenantId !== undefined) url.searchParams.set('tenantId', this.scope.tenantId);
    if (this.scope.userId !== undefined) url.searchParams.set('userId', this.scope.userId);
    if (token) url.searchParams.set('token', token);
    return url.toString();
  }

  private async loop(): Promise<void> {
    let attempt = 0;
    // Consecutive `401`s: with `getToken` a fresh token may fix one (e.g. minted just before it
    // expired), but not several in a row.
    let unauthorized = 0;
    while (!this.closed) {
      this.setStatus(this.everOpened ? 'reconnecting' : 'connecting');
      this.restart = false;
      const controller = new AbortController();
      this.controller = controller;
      let delay: number | undefined;
      let reconnectNow = false;
      try {
        const token = await this.ctx.token();
        if (this.closed) break;
        if (token && !this.ctx.refreshableToken && tokenExpired(token)) {
          this.fail(new TokenExpiredError('the stream token has expired; configure `getToken` to refresh it', this.lastSeq));
          break;
        }
        const patterns = this.patterns;
        await this.ctx.transport({
          url: this.streamUrl(token),
          headers: this.ctx.headers(),
          lastEventId: this.lastSeq,
          eventNames: this.ctx.knownTypes().filter((t) => matchAny(patterns, t)),
          signal: controller.signal,
          onOpen: () => {
            this.everOpened = true;
            attempt = 0;
            unauthorized = 0;
            this.setError(null);
            this.setStatus('open');
          },
          onMessage: (message) => {
            if (this.handle(message, token) === 'reconnect') {
              reconnectNow = true;
              controller.abort();
            }
          },
        });
      } catch (error) {
        if (this.closed) break;
        // An attempt this connection ended itself (wider patterns, `lagged`) did not fail.
        if (!(this.restart || reconnectNow)) this.setError(asError(error));
        if (error instanceof ProblemError) {
          if (error.status === 400 || error.status === 403 || error.status === 404) {
            this.fail(error);
            break;
          }
          if (error.status === 401) {
            unauthorized += 1;
            if (!this.ctx.refreshableToken || unauthorized > 2) {
              this.fail(error);
              break;
            }
          }
          delay = error.retryAfterMs;
        }
      }
      if (this.closed) break;
      if (this.restart || reconnectNow) continue;
      this.setStatus('reconnecting');
      const wait = Math.max(delay ?? 0, backoffDelay(attempt, this.ctx.backoff));
      attempt += 1;
      const sleeper = new AbortController();
      this.wake = () => sleeper.abort();
      await sleep(wait, sleeper.signal).catch(() => undefined);
      this.wake = undefined;
    }
    this.running = false;
  }

  private fail(error: Error) {
    this.setError(error);
    const handlers = [...this.subs].map((s) => s.onError).filter((f): f is (e: Error) => void => !!f);
    if (handlers.length === 0) this.ctx.onHandlerError(error);
    for (const h of handlers) h(error);
    this.close();
  }

  /** Handles one message; returns 'reconnect' when the stream must be reopened at once. */
  private handle(message: SseMessage, token: string | undefined): 'reconnect' | undefined {
    if ((message.event === 'lagged' || message.event === 'token_expired') && message.id === undefined) {
      const data = parseJson(message.data) as { lastEventId?: unknown } | undefined;
      // The server's cursor: where a connection that has not dispatched any event yet resumes.
      const id = data?.lastEventId === undefined || data.lastEventId === null ? NaN : Number(data.lastEventId);
      if (this.lastSeq === null && Number.isFinite(id)) this.lastSeq = id;
      if (message.event === 'token_expired' && !(this.ctx.refreshableToken && token)) {
        this.fail(new TokenExpiredError('the stream token expired; configure `getToken` to refresh it', this.lastSeq));
        return undefined;
      }
      return 'reconnect';
    }
    if (message.event === 'error' && message.id === undefined) {
      // `cursor_archived` is a notice, not a failure: events after the cursor were archived and
      // are not replayed, and the stream goes on with the stored ones after them. Ending the
      // attempt would only bring the same notice again on every reconnection.
      const data = parseJson(message.data) as { code?: unknown } | undefined;
      if (data?.code === 'cursor_archived') return undefined;
      // The store was unavailable during a replay: end this attempt; the loop backs off.
      this.controller?.abort();
      return undefined;
    }
    const event = parseJson(message.data) as BusEvent | undefined;
    if (!event || typeof event.type !== 'string') return undefined;
    const seq = typeof event.seq === 'number' ? event.seq : Number(message.id);
    if (!Number.isFinite(seq)) return undefined;
    if (this.lastSeq !== null && seq <= this.lastSeq) return undefined;
    this.lastSeq = seq;
    for (const sub of [...this.subs]) {
      if (!sub.active || !matchAny(sub.patterns, event.type)) continue;
      try {
        sub.handler(event);
      } catch (error) {
        this.ctx.onHandlerError(error);
      }
    }
    return undefined;
  }
}

/** Whether `token` (a JWT) carries an `exp` in the past; false when it cannot be read. */
function tokenExpired(token: string): boolean {
  const part = token.split('.')[1];
  if (!part || typeof atob !== 'function') return false;
  try {
    const json = atob(part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '='));
    const exp = (JSON.parse(json) as { exp?: unknown }).exp;
    return typeof exp === 'number' && exp * 1000 <= Date.now();
  } catch {
    return false;
  }
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
