/**
 * `EventBusService`: the seed's shape (`publish(event)`, `subscribe(type, handler)`) over one
 * `EventBusClient`, plus consumer groups. It owns what it starts: on module destroy (Nest's
 * `app.close()`, or a signal with `enableShutdownHooks()`) its consume loops stop fetching and
 * their running handlers finish and are acked before its streams close.
 */
import { Inject, Injectable, Logger, type OnModuleDestroy } from '@nestjs/common';
import {
  EventBusClient,
  type BusEvent,
  type ConsumeHandler,
  type ConsumeOptions,
  type ConsumerInfo,
  type Consumption,
  type EventInput,
  type EventOf,
  type StreamFilter,
  type SubscribeOptions,
  type Subscription,
} from '@situs/event-bus-client';

@Injectable()
export class EventBusService implements OnModuleDestroy {
  private readonly logger = new Logger('EventBus');
  private readonly consumptions = new Set<Consumption>();
  private closing = false;

  constructor(@Inject(EventBusClient) readonly client: EventBusClient) {}

  /** Publishes one event; resolves once the bus stored it durably (with its `id`, `seq` and `timestamp`). */
  publish<T extends string>(event: EventInput<T>): Promise<EventOf<T>> {
    return this.client.publish(event);
  }

  /** Publishes events in one request: all are stored, in order, or none is. */
  publishBatch(events: readonly EventInput[]): Promise<BusEvent[]> {
    return this.client.publishBatch(events);
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
