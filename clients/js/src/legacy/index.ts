/**
 * `RealtimeEventsService`: the legacy in-process publisher's API on top of the bus, so the
 * NestJS backend switches by swapping one provider.
 *
 * `publish(type, payload)` takes the legacy `ProjectEventType` name (`PROJECT_CREATED`), maps it
 * to the bus's dotted type (`project.created`) with {@link DEFAULT_EVENT_TYPE_MAP} (overridable),
 * copies `payload.projectId` into the event's `projectId`, and publishes. When the bus is disabled
 * (`EVENT_BUS_ENABLED=false`, or the `enabled` option) nothing is sent to the bus and the
 * optional `legacyPublish` fallback runs instead (the old in-process path).
 */
import type { OutboxEvent } from '../outbox.js';
import type { BusEvent, EventInput, EventMetadata } from '../types.js';

/** The legacy event names. */
export const ProjectEventType = {
  PROJECT_CREATED: 'PROJECT_CREATED',
  PROJECT_UPDATED: 'PROJECT_UPDATED',
  PROJECT_DELETED: 'PROJECT_DELETED',
  PROJECT_STATUS_CHANGED: 'PROJECT_STATUS_CHANGED',
  INTEGRATION_CREATED: 'INTEGRATION_CREATED',
  INTEGRATION_UPDATED: 'INTEGRATION_UPDATED',
  INTEGRATION_DELETED: 'INTEGRATION_DELETED',
  INTEGRATION_STATUS_CHANGED: 'INTEGRATION_STATUS_CHANGED',
  USER_CREATED: 'USER_CREATED',
  USER_UPDATED: 'USER_UPDATED',
  USER_DELETED: 'USER_DELETED',
  MENU_TYPE_CREATED: 'MENU_TYPE_CREATED',
  MENU_ITEM_UPDATED: 'MENU_ITEM_UPDATED',
  MENU_ITEM_DELETED: 'MENU_ITEM_DELETED',
  PLUGIN_INSTALLED: 'PLUGIN_INSTALLED',
  PLUGIN_UPDATED: 'PLUGIN_UPDATED',
  PLUGIN_UNINSTALLED: 'PLUGIN_UNINSTALLED',
} as const;

/** A legacy event name. */
export type ProjectEventType = (typeof ProjectEventType)[keyof typeof ProjectEventType];

/** The documented default mapping of legacy names to bus types. */
export const DEFAULT_EVENT_TYPE_MAP: Readonly<Record<ProjectEventType, string>> = {
  PROJECT_CREATED: 'project.created',
  PROJECT_UPDATED: 'project.updated',
  PROJECT_DELETED: 'project.deleted',
  PROJECT_STATUS_CHANGED: 'project.status_changed',
  INTEGRATION_CREATED: 'integration.created',
  INTEGRATION_UPDATED: 'integration.updated',
  INTEGRATION_DELETED: 'integration.deleted',
  INTEGRATION_STATUS_CHANGED: 'integration.status_changed',
  USER_CREATED: 'user.created',
  USER_UPDATED: 'user.updated',
  USER_DELETED: 'user.deleted',
  MENU_TYPE_CREATED: 'menu.type_created',
  MENU_ITEM_UPDATED: 'menu.item_updated',
  MENU_ITEM_DELETED: 'menu.item_deleted',
  PLUGIN_INSTALLED: 'plugin.installed',
  PLUGIN_UPDATED: 'plugin.updated',
  PLUGIN_UNINSTALLED: 'plugin.uninstalled',
};

/**
 * What the adapter needs from a bus client: an `EventBusClient` (HTTP), or the publisher of
 * `client.outbox(executor)` (the event inserted into the application's outbox table).
 */
export interface EventPublisher {
  publish(event: EventInput): Promise<BusEvent | OutboxEvent>;
}

/** Options of {@link RealtimeEventsService}. */
export interface RealtimeEventsServiceOptions {
  /** The bus client; required unless the bus is disabled. */
  client?: EventPublisher;
  /** Overrides `EVENT_BUS_ENABLED`. */
  enabled?: boolean;
  /** Where `EVENT_BUS_ENABLED` is read (default: `process.env` where it exists). */
  env?: Record<string, string | undefined>;
  /** Entries that replace or extend {@link DEFAULT_EVENT_TYPE_MAP}. */
  typeMap?: Partial<Record<string, string>>;
  /** The old in-process path, called instead of the bus when it is disabled. */
  legacyPublish?: (type: string, payload: Record<string, unknown>) => void | Promise<void>;
  /** `metadata.source` of the published events (default `realtime-events-service`). */
  source?: string;
  /** A `tenantId` for every event, when the service serves one tenant. */
  tenantId?: string;
}

const FALSY = new Set(['false', '0', 'no', 'off']);

/** Reads `EVENT_BUS_ENABLED`: anything but false/0/no/off (or unset) means enabled. */
export function isEventBusEnabled(env: Record<string, string | undefined> | undefined): boolean {
  const value = env?.EVENT_BUS_ENABLED;
  return value === undefined || !FALSY.has(value.trim().toLowerCase());
}

/**
 * Maps a legacy name with `map`; a name not in it follows the rule the defaults follow:
 * lower case, the first `_` becomes the dot (`ORDER_ITEM_ADDED` → `order.item_added`).
 */
export function mapLegacyType(type: string, map: Readonly<Record<string, string | undefined>> = DEFAULT_EVENT_TYPE_MAP): string {
  const mapped = map[type];
  if (mapped) return mapped;
  if (/^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$/.test(type)) return type;
  const lower = type.toLowerCase();
  const i = lower.indexOf('_');
  if (!/^[a-z][a-z0-9_]*$/.test(lower) || i <= 0 || i === lower.length - 1) {
    throw new Error(`no bus event type for legacy type ${JSON.stringify(type)}: add it to typeMap`);
  }
  return `${lower.slice(0, i)}.${lower.slice(i + 1)}`;
}

function processEnv(): Record<string, string | undefined> | undefined {
  return (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
}

export class RealtimeEventsService {
  private readonly options: RealtimeEventsServiceOptions;
  private readonly map: Readonly<Record<string, string | undefined>>;
  /** Whether events go to the bus. */
  readonly enabled: boolean;

  constructor(options: RealtimeEventsServiceOptions = {}) {
    this.options = options;
    this.map = { ...DEFAULT_EVENT_TYPE_MAP, ...options.typeMap };
    this.enabled = options.enabled ?? isEventBusEnabled(options.env ?? processEnv());
    if (this.enabled && !options.client) {
      throw new Error('RealtimeEventsService needs a client while the event bus is enabled');
    }
  }

  /** The bus type for a legacy name. */
  mapType(type: ProjectEventType | string): string {
    return mapLegacyType(type, this.map);
  }

  /** The bus event for a legacy `publish(type, payload)`. */
  toEvent(type: ProjectEventType | string, payload: Record<string, unknown>): EventInput {
    const metadata: EventMetadata = { source: this.options.source ?? 'realtime-events-service' };
    const projectId = payload?.projectId;
    return {
      type: this.mapType(type),
      payload,
      ...(typeof projectId === 'string' || typeof projectId === 'number' ? { projectId: String(projectId) } : {}),
      ...(this.options.tenantId ? { tenantId: this.options.tenantId } : {}),
      metadata,
    };
  }

  /**
   * Publishes like the legacy service did. Resolves to the stored event (through the outbox: the
   * event written, with its id), or undefined when the bus is disabled (then the legacy fallback
   * ran, if any).
   */
  async publish(type: ProjectEventType | string, payload: Record<string, unknown>): Promise<BusEvent | OutboxEvent | undefined> {
    if (!this.enabled) {
      await this.options.legacyPublish?.(type, payload);
      return undefined;
    }
    return this.options.client!.publish(this.toEvent(type, payload));
  }
}
