/**
 * `EventBusModule`: one `EventBusClient` for the application and the services around it.
 *
 * ```ts
 * @Module({ imports: [EventBusModule.forRoot({ url: 'http://127.0.0.1:3002', apiKey })] })
 * export class AppModule {}
 * ```
 *
 * Provides and exports `EventBusService`, `EventBusClient`, `EventBusHealthIndicator` and the
 * legacy `RealtimeEventsService` (over HTTP, or into the outbox when `outbox.executor` is set); runs
 * the `@OnBusEvent` methods of every provider and controller.
 * Global unless `global: false`.
 */
import { Module, type DynamicModule, type Provider } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { EventBusClient } from '@situs/event-bus-client';
import { RealtimeEventsService } from '@situs/event-bus-client/legacy';
import { BusEventConsumers } from './consumers.js';
import { EventBusHealthIndicator } from './health.js';
import { EVENT_BUS_OPTIONS, type EventBusModuleAsyncOptions, type EventBusModuleOptions } from './options.js';
import { EventBusService } from './service.js';

const EXPORTS = [EventBusService, EventBusClient, EventBusHealthIndicator, RealtimeEventsService, EVENT_BUS_OPTIONS];

const providers: Provider[] = [
  {
    provide: EventBusClient,
    useFactory: (options: EventBusModuleOptions) => {
      if (!options?.url) throw new Error('EventBusModule needs a `url` (the bus base URL, e.g. http://127.0.0.1:3002)');
      return new EventBusClient({ ...options.client, url: options.url, ...(options.apiKey ? { apiKey: options.apiKey } : {}) });
    },
    inject: [EVENT_BUS_OPTIONS],
  },
  {
    provide: RealtimeEventsService,
    // With an outbox executor, the legacy events go into the application's outbox table.
    useFactory: (client: EventBusClient, options: EventBusModuleOptions) => {
      const { executor, schema } = options.outbox ?? {};
      const publisher = executor ? client.outbox(executor, schema !== undefined ? { schema } : {}) : client;
      return new RealtimeEventsService({ ...options.legacy, client: publisher });
    },
    inject: [EventBusClient, EVENT_BUS_OPTIONS],
  },
  EventBusService,
  BusEventConsumers,
  EventBusHealthIndicator,
];

@Module({})
export class EventBusModule {
  /** The module with fixed options. */
  static forRoot(options: EventBusModuleOptions): DynamicModule {
    return {
      module: EventBusModule,
      global: options.global ?? true,
      imports: [DiscoveryModule],
      providers: [{ provide: EVENT_BUS_OPTIONS, useValue: options }, ...providers],
      exports: EXPORTS,
    };
  }

  /** The module with options from a factory (`inject` its dependencies, `imports` their modules). */
  static forRootAsync(options: EventBusModuleAsyncOptions): DynamicModule {
    return {
      module: EventBusModule,
      global: options.global ?? true,
      imports: [DiscoveryModule, ...(options.imports ?? [])],
      providers: [
        { provide: EVENT_BUS_OPTIONS, useFactory: options.useFactory, inject: (options.inject ?? []) as never[] },
        ...providers,
      ],
      exports: EXPORTS,
    };
  }
}
