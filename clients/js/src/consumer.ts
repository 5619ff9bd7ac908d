/**
 * Consumer groups over `/v1/consumers/{name}`: the loop behind `EventBusClient.consume`.
 *
 * A {@link Consumption} long-polls `POST …/fetch`, runs the handler on each message and answers the
 * bus: `POST …/ack` when the handler resolves, `POST …/nack` with a delay growing with the
 * message's `deliveryCount` when it throws. Every loop on one consumer — in this process or any
 * other — shares its work: the bus hands each message to one fetcher at a time.
 *
 * Guarantees, per loop:
 * - **Bounded concurrency.** At most `concurrency` handlers run at once: a fetch asks for no more
 *   messages than there are free slots, so the loop never holds a message it cannot start.
 * - **At least once.** A message is acked only after its handler resolved; one whose ack is lost
 *   (outage, lease run out) is handed out again by the bus. De-duplicate by `event.id`.
 * - **Order.** With an `ordered` consumer the bus hands out one message per project at a time, so
 *   a project's events reach the handlers one after another in `seq` order.
 * - **Reconnection.** Network errors, `5xx`, `408` and `429` are retried with the client's
 *   `reconnectBackoff`, honouring `Retry-After`. A refusal that retrying does not fix (`400`,
 *   `401`, `403`, `404` for an unknown consumer, `501`) ends the loop: the {@link ProblemError}
 *   goes to `onError` (default: the client's `onHandlerError`) and to {@link Consumption.error}.
 * - **Clean stop.** `close()` stops fetching (an answer that arrives after it is nacked at once),
 *   lets the running handlers finish, sends their acks and nacks, then resolves.
 */
import { backoffDelay, sleep, type BackoffOptions } from './backoff.js';
import { EventBusError, ProblemError } from './errors.js';
import { isValidPattern } from './pattern.js';
import type { BusEvent } from './types.js';

/** The settings of a consumer group, the body of `PUT /v1/consumers/{name}` (see docs/api.md). */
export interface ConsumerSettings<T extends string = string> {
  /** Type patterns the consumer selects (at least one). */
  types: readonly T[];
  /** Only events of this project. */
  projectId?: string;
  /** Only events of this user. */
  userId?: string;
  /** Where a new consumer starts: `new` (default), `earliest`, or after a `seq`. Ignored on update. */
  startAt?: 'new' | 'earliest' | number;
  /** The lease of a delivery, 10 ms to 12 h (default 30 s): unacked after it, it is handed out again. */
  ackWaitMs?: number;
  /** Deliveries before a message becomes a dead letter, 1 to 1,000 (default 5). */
  maxDeliver?: number;
  /** Messages outstanding at once, 1 to 10,000 (default 1,000). */
  maxAckPending?: number;
  /** One unacked message per project at a time, handed out in `seq` order (default false). */
  ordered?: boolean;
}

/** A consumer as the bus describes it (`GET /v1/consumers/{name}`): its settings and state. */
export interface ConsumerInfo {
  name: string;
  /** Narrowed to the creating key's scope. */
  types: string[];
  /** The creating key's tenant; null for a consumer of an unrestricted key. */
  tenantId: string | null;
  projectId: string | null;
  userId: string | null;
  /** The start it was created with. */
  startAt: 'new' | 'earliest' | number;
  ackWaitMs: number;
  maxDeliver: number;
  maxAckPending: number;
  ordered: boolean;
  createdAt: string;
  updatedAt: string;
  /** Every event up to this `seq` has been considered. */
  cursor: number;
  /** Matching events not delivered yet. */
  pending: number;
  /** Handed out, not acked. */
  ackPending: number;
  redelivered: number;
  deadLettered: number;
  oldestUnackedMs: number | null;
}

/** One delivery of an event to a consumer. */
export interface ConsumedMessage<E extends BusEvent = BusEvent> {
  /** Names this delivery in acks and nacks; valid while its lease runs. */
  ackId: string;
  /** 1 on the first delivery, then one more on each redelivery. */
  deliveryCount: number;
  event: E;
}

/** Handles one message; the message is acked when it resolves and nacked when it throws. */
export type ConsumeHandler<E extends BusEvent = BusEvent> = (event: E, message: ConsumedMessage<E>) => unknown;

/** Options of `EventBusClient.consume`. */
export interface ConsumeOptions<T extends string = string> {
  /** Handlers running at once (default 1). */
  concurrency?: number;
  /** The most messages one fetch asks for (default: `concurrency`; never more than free slots). */
  max?: number;
  /** How long a fetch waits for a message, 0 to 30,000 ms (default 10,000); empty fetches are at least 250 ms apart. */
  waitMs?: number;
  /**
   * The delay of a nack after the handler threw, by the message's `deliveryCount`:
   * `backoffDelay(deliveryCount - 1, nackBackoff)` (default 1 s doubling up to 5 min, jittered).
   */
  nackBackoff?: BackoffOptions;
  /** Creates or updates the consumer with these settings (`PUT`) before the first fetch. */
  create?: ConsumerSettings<T>;
  /** Aborting it closes the consumption, like `close()`. */
  signal?: AbortSignal;
  /** The refusal that ended the loop (default: the client's `onHandlerError`). */
  onError?: (error: Error) => void;
  /** Errors thrown by the handler, after the message was nacked (default: the client's `onHandlerError`). */
  onHandlerError?: (error: unknown, message: ConsumedMessage) => void;
}

/** A running consume loop. */
export interface Consumption {
  /** The consumer's name. */
  readonly name: string;
  /** Handlers running now. */
  readonly inFlight: number;
  /** The refusal that ended the loop, or null. */
  readonly error: Error | null;
  /** Resolves when the loop has stopped and its acks and nacks were sent: after `close()`, or a refusal. Never rejects. */
  readonly closed: Promise<void>;
  /** Stops fetching, waits for the running handlers, acks or nacks them, then resolves. */
  close(): Promise<void>;
}

/** What a consumption needs from its client. */
export interface ConsumerContext {
  /** One request, no retries: the response when it is a success, else a `ProblemError` or `NetworkError`. */
  send: (path: string, init: RequestInit) => Promise<Response>;
  headers: () => Record<string, string>;
  reconnectBackoff: BackoffOptions;
  onHandlerError: (error: unknown) => void;
}

const NAME = /^[a-z0-9][a-z0-9_.-]{0,63}$/;
const MAX_IDS = 1000;
const DEFAULT_NACK_BACKOFF: BackoffOptions = { initialDelayMs: 1000, maxDelayMs: 300_000 };
/** The shortest time between two fetches that came back empty. */
const MIN_EMPTY_POLL_MS = 250;
/** Attempts at one ack or nack batch before it is left to the lease (the bus hands the message out again). */
const ANSWER_ATTEMPTS = 8;

/** Whether retrying may fix `error`: no answer, a server error, a timeout or a rate limit. */
export function isRetryable(error: unknown): boolean {
  if (!(error instanceof ProblemError)) return true;
  return error.status >= 500 ? error.status !== 501 : error.status === 408 || error.status === 429;
}

export class ConsumerLoop implements Consumption {
  readonly name: string;
  readonly closed: Promise<void>;
  private readonly path: string;
  private readonly concurrency: number;
  private readonly max: number;
  private readonly waitMs: number;
  private readonly abort = new AbortController();
  /** Aborts the fetch waiting for its answer; unset once the answer (with its leased messages) arrived. */
  private pollAbort: AbortController | undefined;
  private closing = false;
  private running = 0;
  private lastError: Error | null = null;
  /** Resolves the wait for a free slot. */
  private slotFreed: (() => void) | undefined;
  private readonly handlers = new Set<Promise<void>>();
  private readonly acks: string[] = [];
  /** Nacks by delay. */
  private readonly nacks = new Map<number, string[]>();
  private flushing: Promise<void> | undefined;

  constructor(
    private readonly ctx: ConsumerContext,
    name: string,
    private readonly handler: ConsumeHandler,
    private readonly options: ConsumeOptions,
  ) {
    if (!NAME.test(name)) throw new EventBusError(`invalid consumer name: ${JSON.stringify(name)}`);
    for (const p of options.create?.types ?? []) {
      if (!isValidPattern(p)) throw new EventBusError(`invalid type pattern: ${JSON.stringify(p)}`);
    }
    const concurrency = options.concurrency ?? 1;
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new EventBusError('`concurrency` must be a positive integer');
    this.name = name;
    this.path = `/v1/consumers/${encodeURIComponent(name)}`;
    this.concurrency = concurrency;
    this.max = Math.max(1, Math.min(options.max ?? concurrency, MAX_IDS));
    this.waitMs = Math.max(0, Math.min(options.waitMs ?? 10_000, 30_000));
    const signal = options.signal;
    const onAbort = () => void this.close();
    if (signal?.aborted) this.closing = true;
    else signal?.addEventListener('abort', onAbort, { once: true });
    this.closed = this.run().finally(() => signal?.removeEventListener('abort', onAbort));
  }

  get inFlight(): number {
    return this.running;
  }

  get error(): Error | null {
    return this.lastError;
  }

  close(): Promise<void> {
    if (!this.closing) {
      this.closing = true;
      this.abort.abort();
      this.pollAbort?.abort();
      this.slotFreed?.();
    }
    return this.closed;
  }

  private async run(): Promise<void> {
    try {
      if (this.options.create && !(await this.retrying(() => this.put(this.options.create!)))) return;
      let attempt = 0;
      while (!this.closing) {
        while (this.running >= this.concurrency && !this.closing) {
          await new Promise<void>((resolve) => (this.slotFreed = resolve));
          this.slotFreed = undefined;
        }
        if (this.closing) break;
        const max = Math.min(this.max, this.concurrency - this.running);
        let messages: ConsumedMessage[];
        try {
          messages = await this.fetchMessages(max);
          attempt = 0;
        } catch (error) {
          if (this.closing) break;
          if (!(await this.backoffOrFail(error, attempt++))) return;
          continue;
        }
        if (this.closing) {
          // Fetched as the loop was being closed: give them back at once.
          this.queueNack(messages.map((m) => m.ackId), 0);
          break;
        }
        for (const message of messages) this.start(message);
        // Without a long-poll an empty answer comes at once: do not spin on it.
        if (messages.length === 0 && this.waitMs < MIN_EMPTY_POLL_MS) {
          await sleep(MIN_EMPTY_POLL_MS - this.waitMs, this.abort.signal).catch(() => undefined);
        }
      }
    } finally {
      await Promise.all([...this.handlers]);
      await this.flush();
    }
  }

  /** Runs `step` until it succeeds (true), retrying what may heal; false when it failed for good or the loop closed. */
  private async retrying(step: () => Promise<unknown>): Promise<boolean> {
    for (let attempt = 0; !this.closing; attempt++) {
      try {
        await step();
        return true;
      } catch (error) {
        if (this.closing) return false;
        if (!(await this.backoffOrFail(error, attempt))) return false;
      }
    }
    return false;
  }

  /** Waits before the next attempt after a retryable `error` (true), or ends the loop with it (false). */
  private async backoffOrFail(error: unknown, attempt: number): Promise<boolean> {
    if (!isRetryable(error)) {
      this.fail(error instanceof Error ? error : new EventBusError(String(error)));
      return false;
    }
    const retryAfter = error instanceof ProblemError ? (error.retryAfterMs ?? 0) : 0;
    await sleep(Math.max(retryAfter, backoffDelay(attempt, this.ctx.reconnectBackoff)), this.abort.signal).catch(() => undefined);
    return !this.closing;
  }

  private fail(error: Error) {
    this.lastError = error;
    this.closing = true;
    if (this.options.onError) this.options.onError(error);
    else this.ctx.onHandlerError(error);
  }

  private async put(settings: ConsumerSettings): Promise<void> {
    const response = await this.ctx.send(this.path, {
      method: 'PUT',
      headers: this.ctx.headers(),
      body: JSON.stringify(settings),
      signal: this.abort.signal,
    });
    await response.body?.cancel().catch(() => undefined);
  }

  /**
   * One long-poll. `close()` aborts it only while it waits for the answer: once the answer came,
   * its messages are leased to this loop, so the body is read and they are nacked at once.
   */
  private async fetchMessages(max: number): Promise<ConsumedMessage[]> {
    const poll = new AbortController();
    this.pollAbort = poll;
    let response: Response;
    try {
      response = await this.ctx.send(`${this.path}/fetch`, {
        method: 'POST',
        headers: this.ctx.headers(),
        body: JSON.stringify({ max, waitMs: this.waitMs }),
        signal: poll.signal,
      });
    } finally {
      this.pollAbort = undefined;
    }
    const body = (await response.json()) as { messages?: ConsumedMessage[] };
    return body.messages ?? [];
  }

  private start(message: ConsumedMessage) {
    this.running++;
    const done: Promise<void> = this.handle(message).finally(() => {
      this.running--;
      this.handlers.delete(done);
      this.slotFreed?.();
    });
    this.handlers.add(done);
  }

  private async handle(message: ConsumedMessage): Promise<void> {
    try {
      await this.handler(message.event, message);
      this.queueAck(message.ackId);
    } catch (error) {
      const delay = backoffDelay(message.deliveryCount - 1, this.options.nackBackoff ?? DEFAULT_NACK_BACKOFF);
      this.queueNack([message.ackId], delay);
      try {
        if (this.options.onHandlerError) this.options.onHandlerError(error, message);
        else this.ctx.onHandlerError(error);
      } catch {
        // A failing error callback changes nothing for the message.
      }
    }
  }

  private queueAck(ackId: string) {
    this.acks.push(ackId);
    void this.flush();
  }

  private queueNack(ackIds: string[], delayMs: number) {
    if (ackIds.length === 0) return;
    const list = this.nacks.get(delayMs);
    if (list) list.push(...ackIds);
    else this.nacks.set(delayMs, [...ackIds]);
    void this.flush();
  }

  /**
   * Sends the queued acks and nacks, batched: one flush at a time, and whatever was queued while
   * it ran goes in the next one. Resolves when nothing is queued.
   */
  private flush(): Promise<void> {
    if (this.flushing) return this.flushing;
    const flushing = (async () => {
      // Let handlers that finish together share a request.
      await Promise.resolve();
      try {
        await this.sendQueued();
      } finally {
        // Cleared right after the last check of the queues: whatever comes later starts a new flush.
        this.flushing = undefined;
      }
    })();
    this.flushing = flushing;
    return flushing;
  }

  private async sendQueued(): Promise<void> {
    while (this.acks.length > 0 || this.nacks.size > 0) {
      if (this.acks.length > 0) {
        const ids = this.acks.splice(0, MAX_IDS);
        await this.answer('ack', { ackIds: ids });
      }
      const first = this.nacks.entries().next();
      if (!first.done) {
        const [delayMs, list] = first.value;
        const ids = list.splice(0, MAX_IDS);
        if (list.length === 0) this.nacks.delete(delayMs);
        await this.answer('nack', { ackIds: ids, delayMs: Math.round(delayMs) });
      }
    }
  }

  /**
   * One ack or nack request, retried through short outages. An id the bus no longer knows as a
   * live delivery (`404`/`409`: its lease ran out, it was handed out again) needs nothing more, nor
   * does a batch still failing after some attempts: its messages come back when their leases end.
   */
  private async answer(verb: 'ack' | 'nack', body: { ackIds: string[]; delayMs?: number }): Promise<void> {
    for (let attempt = 0; attempt < ANSWER_ATTEMPTS; attempt++) {
      try {
        const response = await this.ctx.send(`${this.path}/${verb}`, {
          method: 'POST',
          headers: this.ctx.headers(),
          body: JSON.stringify(body),
        });
        await response.body?.cancel().catch(() => undefined);
        return;
      } catch (error) {
        if (!isRetryable(error)) return;
        const retryAfter = error instanceof ProblemError ? (error.retryAfterMs ?? 0) : 0;
        await sleep(Math.max(retryAfter, backoffDelay(attempt, this.ctx.reconnectBackoff)));
      }
    }
  }
}
