/**
 * `EventBusService`: the seed's shape (`publish(event)`, `subscribe(type, handler)`) over one
 * `EventBusClient`, plus consumer groups. `publish(event, { tx })` writes into the transactional
 * outbox through the caller's transaction instead of HTTP. It owns what it starts: on module destroy (Nest's
 * `app.close()`, or a signal with `enableShutdownHooks()`) its consume loops stop fetching and
 * their running handlers finish and are acked before its streams close.
 */
import { Inject, Injectable, Logger, Optional, type OnModuleDestroy } from '@nestjs/common';
import {
  EventBusClient,
  type BusEvent,
  type ConsumeHandler,
  type ConsumeOptions,
  type ConsumerInfo,
  type Consumption,
  type EventInput,
  type EventOf,
  type OutboxEvent,
  type OutboxExecutor,
  type OutboxOptions,
  type StreamFilter,
  type SubscribeOptions,
  type Subscription,
} from '@situs/event-bus-client';
import { EVENT_BUS_OPTIONS, type EventBusModuleOptions } from './options.js';

/** Options of {@link EventBusService.publish} into the outbox. */
export interface OutboxPublishOptions {
  /**
   * The transaction the event joins: a node-postgres client inside `BEGIN`, or a Prisma
   * interactive transaction (`prisma.$transaction(async (tx) => …)`). A pool or a `PrismaClient`
   * writes in a statement of its own.
   */
  tx: OutboxExecutor;
}

@Injectable()
export class EventBusService implements OnModuleDestroy {
  private readonly logger = new Logger('EventBus');
  private readonly consumptions = new Set<Consumption>();
  private closing = false;

  private readonly outbox: OutboxOptions;

  constructor(
    @Inject(EventBusClient) readonly client: EventBusClient,
    @Optional() @Inject(EVENT_BUS_OPTIONS) options?: EventBusModuleOptions,
  ) {
    const schema = options?.outbox?.schema;
    this.outbox = schema !== undefined ? { schema } : {};
  }

  /**
   * Publishes one event; resolves once the bus stored it durably (with its `id`, `seq` and
   * `timestamp`). With `{ tx }`: inserts it into the outbox table (the module's `outbox.schema`)
   * in that transaction instead, and resolves to the event with its `id`; the bus relays it once
   * the transaction commits, and never if it rolls back.
   */
  publish<T extends string>(event: EventInput<T>): Promise<EventOf<T>>;
  publish<T extends string>(event: EventInput<T>, options: OutboxPublishOptions): Promise<OutboxEvent<T>>;
  async publish<T extends string>(event: EventInput<T>, options?: OutboxPublishOptions): Promise<EventOf<T> | OutboxEvent<T>> {
    if (options) return this.client.outbox(this.tx(options), this.outbox).publish(event);
    return this.client.publish(event);
  }

  /**
   * Publishes events in one request: all are stored, in order, or none is. With `{ tx }`: one
   * INSERT into the outbox in that transaction (all or none), resolving to the events with their ids.
   */
  publishBatch(events: readonly EventInput[]): Promise<BusEvent[]>;
  publishBatch(events: readonly EventInput[], options: OutboxPublishOptions): Promise<OutboxEvent[]>;
  async publishBatch(events: readonly EventInput[], options?: OutboxPublishOptions): Promise<BusEvent[] | OutboxEvent[]> {
    if (options) return this.client.outbox(this.tx(options), this.outbox).publishBatch(events);
    return this.client.publishBatch(events);
  }

  /** The `tx` of publish options: a missing one is a mistake, never a silent fall back to HTTP. */
  private tx(options: OutboxPublishOptions): OutboxExecutor {
    if (!options.tx) throw new Error('publish(event, { tx }): `tx` is missing (a node-postgres client or a Prisma transaction)');
    return options.tx;
  }

  /**
   * Live events of a type or filter, over the bus's stream: **every** process that subscribes
   * gets every event (fan-out), nothing is kept while it is down. For work that must be done once
   * and survive restarts, use `@OnBusEvent` (a consumer group) instead.
   */
  subscribe<T extends string>(type: T, handler: (event: EventOf<T>) => void, options?: SubscribeOptions): Subscription;
  subscribe<T extends string>(filter: StreamFilter<T>, handler: (event: EventOf<T>) => void, options?: SubscribeOptions): Subscription;
  subscribe(filter: string | StreamFilter, handler: (event: BusEvent) => void, options?: SubscribeOptions): Subscription {
    return typeof filter === 'string'
      ? this.client.subscribe(filter, handler, options)
      : this.client.subscribe(filter, handler, options);
  }

  /** Runs `handler` on the consumer group `name` (see `EventBusClient.consume`); closed with the module. */
  consume<T extends string = string>(name: string, handler: ConsumeHandler<EventOf<T>>, options: ConsumeOptions<T> = {}): Consumption {
    if (this.closing) throw new Error(`the event bus module is shutting down: cannot start consumer ${name}`);
    const consumption = this.client.consume<T>(name, handler, {
      onError: (error) => this.logger.error(`consumer ${name} stopped: ${error.message}`),
      onHandlerError: (error, message) =>
        this.logger.warn(
          `consumer ${name}: handler failed on ${message.event.type} ${message.event.id} ` +
            `(delivery ${message.deliveryCount}), redelivered later: ${error instanceof Error ? error.message : String(error)}`,
        ),
      ...options,
    });
    this.consumptions.add(consumption);
    void consumption.closed.then(() => this.consumptions.delete(consumption));
    return consumption;
  }

  /** A consumer group's settings and state, or null when the bus has none of that name. */
  getConsumer(name: string): Promise<ConsumerInfo | null> {
    return this.client.getConsumer(name);
  }

  /** Consume loops running now. */
  get running(): readonly Consumption[] {
    return [...this.consumptions];
  }

  /** Stops every consume loop (running handlers finish and are acked), then closes the streams. */
  async onModuleDestroy(): Promise<void> {
    this.closing = true;
    const running = [...this.consumptions];
    if (running.length > 0) {
      const inFlight = running.reduce((n, c) => n + c.inFlight, 0);
      this.logger.log(`draining ${running.length} consumer(s), ${inFlight} handler(s) running`);
    }
    await Promise.all(running.map((c) => c.close()));
    this.client.close();
  }
}
