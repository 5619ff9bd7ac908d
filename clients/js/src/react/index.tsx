/**
 * React bindings: `<EventBusProvider client={…}>` and hooks that share the provider's client and
 * therefore its stream connections. Each hook subscribes in an effect and unsubscribes in its
 * cleanup, so React 18 StrictMode's mount → unmount → mount leaves exactly one subscription (and
 * the connection survives the gap: it closes only a tick after its last subscription).
 *
 * Authentication is the client's: in a browser give it `getToken` (a call to your backend, which
 * mints a stream token), never an API key; in Node (SSR, tests) an `apiKey`. Either build the
 * client yourself (`<EventBusProvider client={…}>`) or let the provider build it
 * (`<EventBusProvider options={{ url, getToken }}>`).
 */
import { createContext, useCallback, useContext, useEffect, useRef, useState, useSyncExternalStore, type ReactNode } from 'react';
import { EventBusClient, type EventBusClientOptions } from '../client.js';
import type { BusEvent, ConnectionStatus, EventInput, EventOf, StreamFilter } from '../types.js';

const EventBusContext = createContext<EventBusClient | null>(null);

/**
 * Props of {@link EventBusProvider}: a `client`, or the `options` of one the provider creates on
 * mount (read once, except `getToken`, whose latest value is always called; remount with a new
 * `key` to change the others).
 */
export type EventBusProviderProps =
  | { client: EventBusClient; options?: undefined; children?: ReactNode }
  | { client?: undefined; options: EventBusClientOptions; children?: ReactNode };

/** Makes a client available to the hooks below it. */
export function EventBusProvider({ client, options, children }: EventBusProviderProps) {
  const latestOptions = useRef(options);
  latestOptions.current = options;
  const [owned] = useState<EventBusClient | null>(() => {
    if (client || !options) return null;
    const { getToken } = options;
    return new EventBusClient({
      ...options,
      // Through the ref: an inline callback may change on every render.
      ...(getToken ? { getToken: () => (latestOptions.current?.getToken ?? getToken)() } : {}),
    });
  });
  const value = client ?? owned;
  if (!value) throw new Error('<EventBusProvider> needs a `client` or `options`');
  return <EventBusContext.Provider value={value}>{children}</EventBusContext.Provider>;
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
export function useEventBus<T = unknown>(eventType: string, options: { onError?: (error: Error) => void } = {}): T | null {
  const client = useEventBusClient();
  const [payload, setPayload] = useState<T | null>(null);
  const onError = useLatest(options.onError);
  useEffect(() => {
    const subscription = client.subscribe(
      { types: [eventType] },
      (event: BusEvent) => {
        setPayload(event.payload as T);
      },
      { onError: (error) => report(onError.current, error) },
    );
    return () => subscription.unsubscribe();
  }, [client, eventType, onError]);
  return payload;
}

/** Options of {@link useEventStream}. */
export interface UseEventStreamOptions {
  /** How many events to keep (default 50). */
  limit?: number;
  /**
   * Called when the stream stops for good: a refusal (`ProblemError` 400/401/403) or an expired
   * static token (`TokenExpiredError`). Changing it does not resubscribe.
   */
  onError?: (error: Error) => void;
}

/** Gives a stream error to the hook's `onError`, or logs it like the client does without one. */
function report(onError: ((error: Error) => void) | undefined, error: Error) {
  if (onError) onError(error);
  else console.error('event bus subscription:', error);
}

/** A ref that always holds the latest `value`, for callbacks that must not trigger effects. */
function useLatest<V>(value: V) {
  const ref = useRef(value);
  useEffect(() => {
    ref.current = value;
  });
  return ref;
}

/**
 * The latest `limit` events selected by `filter`, oldest first. The filter is compared by value,
 * so an inline object literal does not resubscribe on every render.
 */
export function useEventStream<T extends string = string>(
  filter: StreamFilter<T>,
  { limit = 50, onError }: UseEventStreamOptions = {},
): EventOf<T>[] {
  const client = useEventBusClient();
  const onErrorRef = useLatest(onError);
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
      { onError: (error) => report(onErrorRef.current, error) },
    );
    return () => subscription.unsubscribe();
  }, [client, key, limit, onErrorRef]);
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
