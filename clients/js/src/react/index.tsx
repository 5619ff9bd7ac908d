/**
 * React bindings: `<EventBusProvider client={…}>` and hooks that share the provider's client and
 * therefore its stream connections. Each hook subscribes in an effect and unsubscribes in its
 * cleanup, so React 18 StrictMode's mount → unmount → mount leaves exactly one subscription (and
 * the connection survives the gap: it closes only a tick after its last subscription).
 */
import { createContext, useCallback, useContext, useEffect, useState, useSyncExternalStore, type ReactNode } from 'react';
import type { EventBusClient } from '../client.js';
import type { BusEvent, ConnectionStatus, EventInput, EventOf, StreamFilter } from '../types.js';

const EventBusContext = createContext<EventBusClient | null>(null);

/** Props of {@link EventBusProvider}. */
export interface EventBusProviderProps {
  client: EventBusClient;
  children?: ReactNode;
}

/** Makes `client` available to the hooks below it. */
export function EventBusProvider({ client, children }: EventBusProviderProps) {
  return <EventBusContext.Provider value={client}>{children}</EventBusContext.Provider>;
}

/** The provider's client; throws outside an {@link EventBusProvider}. */
export function useEventBusClient(): EventBusClient {
  const client = useContext(EventBusContext);
  if (!client) throw new Error('useEventBus hooks must be used inside <EventBusProvider>');
  return client;
}

/**
 * The payload of the latest event of `eventType` (a type or a pattern) received since mount;
 * null until one arrives.
 */
export function useEventBus<T = unknown>(eventType: string): T | null {
  const client = useEventBusClient();
  const [payload, setPayload] = useState<T | null>(null);
  useEffect(() => {
    const subscription = client.subscribe({ types: [eventType] }, (event: BusEvent) => {
      setPayload(event.payload as T);
    });
    return () => subscription.unsubscribe();
  }, [client, eventType]);
  return payload;
}

/** Options of {@link useEventStream}. */
export interface UseEventStreamOptions {
  /** How many events to keep (default 50). */
  limit?: number;
}

/**
 * The latest `limit` events selected by `filter`, oldest first. The filter is compared by value,
 * so an inline object literal does not resubscribe on every render.
 */
export function useEventStream<T extends string = string>(
  filter: StreamFilter<T>,
  { limit = 50 }: UseEventStreamOptions = {},
): EventOf<T>[] {
  const client = useEventBusClient();
  const key = JSON.stringify([
    filter.types ? [...filter.types].sort() : null,
    filter.projectId ?? null,
    filter.tenantId ?? null,
    filter.userId ?? null,
  ]);
  const [events, setEvents] = useState<EventOf<T>[]>([]);
  useEffect(() => {
    const [types, projectId, tenantId, userId] = JSON.parse(key) as [T[] | null, string | null, string | null, string | null];
    const subscription = client.subscribe<T>(
      {
        ...(types ? { types } : {}),
        ...(projectId !== null ? { projectId } : {}),
        ...(tenantId !== null ? { tenantId } : {}),
        ...(userId !== null ? { userId } : {}),
      },
      (event) => setEvents((previous) => [...previous, event].slice(-limit)),
    );
    return () => subscription.unsubscribe();
  }, [client, key, limit]);
  return events;
}

/** A stable function that publishes through the provider's client. */
export function usePublish(): <K extends string>(event: EventInput<K>) => Promise<EventOf<K>> {
  const client = useEventBusClient();
  return useCallback(<K extends string>(event: EventInput<K>) => client.publish(event), [client]);
}

/** The state of the provider's streams: `connecting | open | reconnecting | closed`. */
export function useEventBusStatus(): ConnectionStatus {
  const client = useEventBusClient();
  return useSyncExternalStore(
    useCallback((onChange: () => void) => client.onStatusChange(onChange), [client]),
    () => client.status,
    () => 'closed' as ConnectionStatus,
  );
}
