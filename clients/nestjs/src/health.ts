/**
 * `EventBusHealthIndicator` for `@nestjs/terminus`:
 *
 * ```ts
 * @Get('health') @HealthCheck()
 * check() { return this.health.check([() => this.bus.isHealthy('eventBus')]); }
 * ```
 *
 * Up when the bus answers its readiness check (`GET /health/ready`) in time and each checked
 * consumer has at most `maxLag` undelivered events; down otherwise, with the reason. It returns
 * Terminus's `HealthIndicatorResult` shape and imports nothing of Terminus, so the module works
 * without it.
 */
import { Inject, Injectable } from '@nestjs/common';
import { EventBusClient, type ConsumerInfo } from '@situs/event-bus-client';
import { BusEventConsumers } from './consumers.js';
import { EVENT_BUS_OPTIONS, type EventBusModuleOptions, type HealthOptions } from './options.js';

/** Terminus's result: `{ [key]: { status, …details } }`. */
export type HealthIndicatorResult<Key extends string = string> = Record<
  Key,
  { status: 'up' | 'down'; [detail: string]: unknown }
>;

/** What the indicator reports of one consumer. */
export interface ConsumerHealth {
  status: 'up' | 'down';
  pending?: number;
  ackPending?: number;
  deadLettered?: number;
  oldestUnackedMs?: number | null;
  message?: string;
}

const DEFAULT_MAX_LAG = 10_000;
const DEFAULT_TIMEOUT_MS = 2_000;

@Injectable()
export class EventBusHealthIndicator {
  constructor(
    @Inject(EventBusClient) private readonly client: EventBusClient,
    @Inject(EVENT_BUS_OPTIONS) private readonly options: EventBusModuleOptions,
    @Inject(BusEventConsumers) private readonly consumers: BusEventConsumers,
  ) {}

  /** The bus's health as the entry `key` of a Terminus check; `options` override the module's `health`. */
  async isHealthy<Key extends string = 'eventBus'>(key: Key = 'eventBus' as Key, options: HealthOptions = {}): Promise<HealthIndicatorResult<Key>> {
    const settings = { ...this.options.health, ...options };
    const timeoutMs = settings.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const maxLag = settings.maxLag ?? DEFAULT_MAX_LAG;
    const names = settings.consumers ?? this.consumers.handlers.map((h) => h.consumer);
    const signal = AbortSignal.timeout(timeoutMs);
    const result = (status: 'up' | 'down', details: Record<string, unknown>) =>
      ({ [key]: { status, url: this.client.url, ...details } }) as unknown as HealthIndicatorResult<Key>;
    try {
      const ready = await this.client.readiness(signal);
      if (!ready.ok) {
        const failing = Object.keys(ready.error ?? {});
        return result('down', { message: `the bus is not ready (${failing.join(', ') || 'no reason given'})` });
      }
      const entries = await Promise.all(names.map(async (name) => [name, await this.consumerHealth(name, maxLag)] as const));
      const consumers = Object.fromEntries(entries);
      const down = entries.filter(([, h]) => h.status === 'down').map(([name]) => name);
      if (down.length > 0) {
        return result('down', { message: `consumer(s) ${down.join(', ')} over their limits`, consumers });
      }
      return result('up', names.length > 0 ? { consumers } : {});
    } catch (error) {
      const message = signal.aborted
        ? `the bus did not answer within ${timeoutMs} ms`
        : error instanceof Error
          ? error.message
          : String(error);
      return result('down', { message });
    }
  }

  private async consumerHealth(name: string, maxLag: number): Promise<ConsumerHealth> {
    const info: ConsumerInfo | null = await this.client.getConsumer(name);
    if (!info) return { status: 'down', message: 'the bus has no consumer of this name' };
    const { pending, ackPending, deadLettered, oldestUnackedMs } = info;
    const state = { pending, ackPending, deadLettered, oldestUnackedMs };
    return pending > maxLag
      ? { status: 'down', ...state, message: `${pending} undelivered events, more than ${maxLag}` }
      : { status: 'up', ...state };
  }
}
