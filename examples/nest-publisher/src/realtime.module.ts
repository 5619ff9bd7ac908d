/**
 * The realtime module of a NestJS backend, switched to the event bus.
 *
 * Only the providers change: every service that injected `RealtimeEventsService` keeps calling
 * `publish(ProjectEventType.PROJECT_CREATED, payload)`. With NestJS installed the module reads:
 *
 * ```ts
 * @Global()
 * @Module({ providers: realtimeProviders, exports: [RealtimeEventsService] })
 * export class RealtimeModule {}
 * ```
 *
 * The provider objects below are exactly what `@Module({ providers })` takes. The bus client
 * publishes with the API key in `EVENT_BUS_API_KEY` (a key with `publish`).
 */
import { EventBusClient } from '@situs/event-bus-client';
import { RealtimeEventsService } from '@situs/event-bus-client/legacy';
import { LegacyRealtimeGateway } from './legacy-gateway.js';

/** Injection token of the bus client. */
export const EVENT_BUS_CLIENT = 'EVENT_BUS_CLIENT';
/** Injection token of the environment (tests pass their own). */
export const ENV = 'ENV';

export type Env = Record<string, string | undefined>;

/** A NestJS provider: `{ provide, useClass }` or `{ provide, useFactory, inject }`. */
export type Provider =
  | { provide: unknown; useClass: new () => unknown }
  | { provide: unknown; useFactory: (...deps: never[]) => unknown; inject?: unknown[] };

export const realtimeProviders: Provider[] = [
  { provide: LegacyRealtimeGateway, useClass: LegacyRealtimeGateway },
  {
    provide: EVENT_BUS_CLIENT,
    useFactory: (env: Env) =>
      new EventBusClient({
        url: env.EVENT_BUS_URL ?? 'http://127.0.0.1:3002',
        ...(env.EVENT_BUS_API_KEY ? { apiKey: env.EVENT_BUS_API_KEY } : {}),
      }),
    inject: [ENV],
  },
  {
    provide: RealtimeEventsService,
    useFactory: (client: EventBusClient, legacy: LegacyRealtimeGateway, env: Env) =>
      new RealtimeEventsService({
        client,
        env,
        source: 'situs-backend',
        legacyPublish: (type, payload) => legacy.publish(type, payload),
      }),
    inject: [EVENT_BUS_CLIENT, LegacyRealtimeGateway, ENV],
  },
];
