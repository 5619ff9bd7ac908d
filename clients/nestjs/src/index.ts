/**
 * `@situs/event-bus-nestjs`: the Situs Event Bus in a NestJS application.
 *
 * - {@link EventBusModule} — `forRoot({ url, apiKey })` / `forRootAsync({ useFactory, inject })`
 * - {@link EventBusService} — `publish(event)` (`publish(event, { tx })` into the outbox),
 *   `subscribe(type, handler)`, `consume(name, handler)`
 * - {@link OnBusEvent} — a method decorator: the method handles a consumer group's events, the
 *   work shared by every replica
 * - {@link EventBusHealthIndicator} — for `@nestjs/terminus`
 * - `RealtimeEventsService` (from `@situs/event-bus-client/legacy`) — provided by the module
 */
export { EventBusModule } from './module.js';
export { EventBusService, type OutboxPublishOptions } from './service.js';
export { OnBusEvent, ON_BUS_EVENT, type OnBusEventOptions, type OnBusEventMetadata } from './decorator.js';
export { BusEventConsumers, defaultConsumerName, type BusEventHandler } from './consumers.js';
export { EventBusHealthIndicator, type ConsumerHealth, type HealthIndicatorResult } from './health.js';
export {
  EVENT_BUS_OPTIONS,
  type ConsumerDefaults,
  type EventBusModuleAsyncOptions,
  type EventBusModuleOptions,
  type HealthOptions,
  type OutboxModuleOptions,
} from './options.js';
export { EventBusClient } from '@situs/event-bus-client';
export { RealtimeEventsService } from '@situs/event-bus-client/legacy';
