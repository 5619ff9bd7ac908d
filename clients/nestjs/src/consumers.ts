/**
 * Finds the `@OnBusEvent` methods of every provider and controller at application bootstrap and
 * runs one consume loop per method through {@link EventBusService}: the decorator's settings
 * over the module's `consumerDefaults`.
 */
import { Inject, Injectable, Logger, type OnApplicationBootstrap } from '@nestjs/common';
import { DiscoveryService, MetadataScanner, Reflector } from '@nestjs/core';
import type { ConsumeHandler, ConsumeOptions, ConsumerSettings } from '@situs/event-bus-client';
import { ON_BUS_EVENT, type OnBusEventMetadata } from './decorator.js';
import { EVENT_BUS_OPTIONS, type EventBusModuleOptions } from './options.js';
import { EventBusService } from './service.js';

/** One `@OnBusEvent` method, as found at start-up. */
export interface BusEventHandler {
  /** The consumer group's name. */
  consumer: string;
  /** `ClassName.method`. */
  handler: string;
  types: string[];
  settings: ConsumerSettings;
  /** How this process runs the loop. */
  loop: Pick<ConsumeOptions, 'concurrency' | 'waitMs' | 'nackBackoff'>;
}

const NAME = /^[a-z0-9][a-z0-9_.-]{0,63}$/;

/** The default consumer name of `Class.method`: lower case, other characters as `-`, 64 at most. */
export function defaultConsumerName(className: string, method: string): string {
  return `${className}.${method}`
    .toLowerCase()
    .replace(/[^a-z0-9_.-]/g, '-')
    .replace(/^[^a-z0-9]+/, '')
    .slice(0, 64);
}

@Injectable()
export class BusEventConsumers implements OnApplicationBootstrap {
  private readonly logger = new Logger('EventBus');
  private found: BusEventHandler[] = [];

  constructor(
    @Inject(DiscoveryService) private readonly discovery: DiscoveryService,
    @Inject(MetadataScanner) private readonly scanner: MetadataScanner,
    @Inject(Reflector) private readonly reflector: Reflector,
    @Inject(EventBusService) private readonly bus: EventBusService,
    @Inject(EVENT_BUS_OPTIONS) private readonly options: EventBusModuleOptions,
  ) {}

  /** The handlers found at start-up (also when `consumers: false` keeps them from running). */
  get handlers(): readonly BusEventHandler[] {
    return this.found;
  }

  onApplicationBootstrap(): void {
    const found: (BusEventHandler & { run: ConsumeHandler })[] = [];
    const wrappers = [...this.discovery.getProviders(), ...this.discovery.getControllers()];
    for (const wrapper of wrappers) {
      const instance = wrapper.instance as Record<string, unknown> | undefined;
      // Request-scoped providers have no single instance to call.
      if (!instance || typeof instance !== 'object' || !wrapper.isDependencyTreeStatic()) continue;
      const prototype = Object.getPrototypeOf(instance) as object | null;
      if (!prototype) continue;
      for (const method of this.scanner.getAllMethodNames(prototype)) {
        const fn = instance[method];
        if (typeof fn !== 'function') continue;
        const meta = this.reflector.get<OnBusEventMetadata | undefined>(ON_BUS_EVENT, fn as (...args: unknown[]) => unknown);
        if (!meta) continue;
        const className = instance.constructor?.name ?? 'Anonymous';
        found.push({ ...this.describe(className, method, meta), run: (event, message) => fn.call(instance, event, message) });
      }
    }
    const byName = new Map<string, string>();
    for (const h of found) {
      const other = byName.get(h.consumer);
      if (other) throw new Error(`@OnBusEvent: ${other} and ${h.handler} both use consumer ${h.consumer}; give each its own`);
      byName.set(h.consumer, h.handler);
    }
    this.found = found.map(({ run: _run, ...h }) => h);
    if (this.options.consumers === false) return;
    for (const h of found) {
      this.bus.consume(h.consumer, h.run, { ...h.loop, create: h.settings });
      this.logger.log(`consumer ${h.consumer} → ${h.handler} (${h.types.join(', ')}, concurrency ${h.loop.concurrency})`);
    }
  }

  private describe(className: string, method: string, meta: OnBusEventMetadata): BusEventHandler {
    const handler = `${className}.${method}`;
    const { consumer, concurrency, waitMs, nackBackoff, ...settings } = { ...this.options.consumerDefaults, ...meta.options };
    const name = consumer ?? defaultConsumerName(className, method);
    if (!NAME.test(name)) {
      throw new Error(`@OnBusEvent on ${handler}: consumer name ${JSON.stringify(name)} must match ${NAME.source}`);
    }
    return {
      consumer: name,
      handler,
      types: meta.types,
      settings: { ...settings, types: meta.types },
      loop: { concurrency: concurrency ?? 1, ...(waitMs !== undefined ? { waitMs } : {}), ...(nackBackoff ? { nackBackoff } : {}) },
    };
  }
}
