/**
 * `@OnBusEvent`: marks a provider method as the handler of a consumer group. At start-up the
 * module finds every marked method (Nest's discovery) and runs a consume loop for it; every
 * process of the application that runs the same code shares the consumer's work.
 */
import { SetMetadata } from '@nestjs/common';
import type { BackoffOptions, ConsumerSettings } from '@situs/event-bus-client';

/** Metadata key of an `@OnBusEvent` method. */
export const ON_BUS_EVENT = 'situs:event-bus:on-bus-event';

/** Options of `@OnBusEvent`: the consumer's name and settings, and how this process runs it. */
export interface OnBusEventOptions extends Omit<ConsumerSettings, 'types'> {
  /**
   * The consumer group's name (`[a-z0-9][a-z0-9_.-]{0,63}`). Default: the class and method,
   * lower-cased (`PluginHandler.onInstalled` → `pluginhandler.oninstalled`). Name it: renaming
   * the method would otherwise start a new consumer.
   */
  consumer?: string;
  /** Handlers running at once in this process (default 1, or the module's `consumerDefaults`). */
  concurrency?: number;
  /** Long-poll wait of one fetch (default 10,000 ms). */
  waitMs?: number;
  /** Delay of the redelivery after the handler threw, by delivery count (default 1 s doubling to 5 min). */
  nackBackoff?: BackoffOptions;
}

/** What `@OnBusEvent` records on the method. */
export interface OnBusEventMetadata {
  types: string[];
  options: OnBusEventOptions;
}

/**
 * Runs the decorated method for each event of `types` (patterns such as `project.*` allowed),
 * through the consumer group `options.consumer`. The method gets `(event, message)`; the message
 * is acked when it returns (or its promise resolves) and redelivered later when it throws, up to
 * `maxDeliver` deliveries, then dead-lettered. At least once: make the handler idempotent (by
 * `event.id`).
 */
export function OnBusEvent(types: string | readonly string[], options: OnBusEventOptions = {}): MethodDecorator {
  const list = typeof types === 'string' ? [types] : [...types];
  if (list.length === 0) throw new Error('@OnBusEvent needs at least one event type');
  return SetMetadata<string, OnBusEventMetadata>(ON_BUS_EVENT, { types: list, options: { ...options } });
}
