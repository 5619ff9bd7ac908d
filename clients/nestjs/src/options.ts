/** The options of {@link EventBusModule} and the injection token they are provided under. */
import type { ModuleMetadata } from '@nestjs/common';
import type { ConsumerSettings, EventBusClientOptions, OutboxExecutor } from '@situs/event-bus-client';
import type { RealtimeEventsServiceOptions } from '@situs/event-bus-client/legacy';

/** Injection token of the module's {@link EventBusModuleOptions}. */
export const EVENT_BUS_OPTIONS = Symbol('EVENT_BUS_OPTIONS');

/** Settings every `@OnBusEvent` consumer starts from; the decorator's own options win. */
export type ConsumerDefaults = Omit<ConsumerSettings, 'types'> & {
  /** Handlers of one consumer running at once in this process (default 1). */
  concurrency?: number;
};

export interface EventBusModuleOptions {
  /** The bus base URL, e.g. `http://127.0.0.1:3002`. */
  url: string;
  /** An API key (`publish` to publish; `subscribe` to consume, subscribe and read consumer state). */
  apiKey?: string;
  /** More options of the underlying `EventBusClient` (retries, backoff, fetch, …). */
  client?: Omit<EventBusClientOptions, 'url' | 'apiKey'>;
  /**
   * Whether this process runs its `@OnBusEvent` handlers (default true). A process that only
   * publishes (a migration script, a CLI) sets it to false.
   */
  consumers?: boolean;
  /** Defaults of every `@OnBusEvent` consumer. */
  consumerDefaults?: ConsumerDefaults;
  /** Options of the legacy `RealtimeEventsService` provider (`client` is the module's). */
  legacy?: Omit<RealtimeEventsServiceOptions, 'client'>;
  /** The transactional outbox: where `publish(event, { tx })` and the legacy service write. */
  outbox?: OutboxModuleOptions;
  /** Defaults of {@link EventBusHealthIndicator.isHealthy}. */
  health?: HealthOptions;
  /** Registers the module globally (default true), so feature modules inject its services without importing it. */
  global?: boolean;
}

/** The module's outbox: the table's schema, and what the legacy service writes through. */
export interface OutboxModuleOptions {
  /** The schema of the `outbox` table (`[a-z_][a-z0-9_]{0,62}`, default `eventbus`). */
  schema?: string;
  /**
   * A node-postgres `Pool` or a `PrismaClient`. When set, the legacy `RealtimeEventsService`
   * inserts its events into the outbox through it, each in a statement of its own, instead of
   * sending them over HTTP. `EventBusService.publish(event, { tx })` uses the `tx` it is given.
   */
  executor?: OutboxExecutor;
}

/** Thresholds of the health indicator. */
export interface HealthOptions {
  /** The most undelivered events (`pending`) a consumer may have before it counts as down (default 10,000). */
  maxLag?: number;
  /** The consumers checked (default: those of this process's `@OnBusEvent` handlers). */
  consumers?: readonly string[];
  /** How long the bus has to answer (default 2,000 ms). */
  timeoutMs?: number;
}

/** `EventBusModule.forRootAsync`: options from a factory, e.g. from `ConfigService`. */
export interface EventBusModuleAsyncOptions extends Pick<ModuleMetadata, 'imports'> {
  useFactory: (...args: never[]) => EventBusModuleOptions | Promise<EventBusModuleOptions>;
  inject?: unknown[];
  /** Registers the module globally (default true). */
  global?: boolean;
}
