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

/** Options of {@link useEventBus}. */
export interface UseEventBusOptions {
  /**
   * Called when the stream stops for good, as for {@link useEventStream}. Changing it does not
   * resubscribe.
   */
  onError?: (error: Error) => void;
}

/**
 * The payload of the latest event selected by `selection` since mount (or since the selection last
 * changed); null until one arrives. `selection` is a type or a pattern (`'project.updated'`: from
 * every project the client's credential can see), or a filter like {@link useEventStream}'s
 * (`{ types: ['project.updated'], projectId }`), compared by value.
 */
export function useEventBus<T = unknown>(selection: string | StreamFilter, options: UseEventBusOptions = {}): T | null {
  const filter = typeof selection === 'string' ? { types: [selection] } : selection;
  const [latest, setLatest] = useState<{ key: string; payload: T } | null>(null);
  const key = useSubscription(filter, (event, eventKey) => setLatest({ key: eventKey, payload: event.payload as T }), options.onError);
  // A new filter forgets the previous one's payload (also for a later return to that filter).
  if (latest !== null && latest.key !== key) setLatest(null);
  return latest && latest.key === key ? latest.payload : null;
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

/** A filter as a string: filters equal by value are one dependency of an effect. */
function filterKey(filter: StreamFilter): string {
  return JSON.stringify([
    filter.types ? [...filter.types].sort() : null,
    filter.projectId ?? null,
    filter.tenantId ?? null,
    filter.userId ?? null,
  ]);
}

/** The filter a {@link filterKey} was made from. */
function filterFromKey(key: string): StreamFilter {
  const [types, projectId, tenantId, userId] = JSON.parse(key) as [string[] | null, string | null, string | null, string | null];
  return {
    ...(types ? { types } : {}),
    ...(projectId !== null ? { projectId } : {}),
    ...(tenantId !== null ? { tenantId } : {}),
    ...(userId !== null ? { userId } : {}),
  };
}

/**
 * Subscribes to `filter` in an effect, resubscribing only when the filter changes by value; returns
 * the filter's key. `onEvent` gets each event with the key of the filter that selected it, so the
 * caller can drop what it kept for an earlier filter. `onEvent` and `onError` may be new functions
 * on every render: the latest ones are called.
 */
function useSubscription(
  filter: StreamFilter,
  onEvent: (event: BusEvent, key: string) => void,
  onError: ((error: Error) => void) | undefined,
): string {
  const client = useEventBusClient();
  const key = filterKey(filter);
  const onEventRef = useLatest(onEvent);
  const onErrorRef = useLatest(onError);
  useEffect(() => {
    const subscription = client.subscribe(filterFromKey(key), (event) => onEventRef.current(event, key), {
      onError: (error) => report(onErrorRef.current, error),
    });
    return () => subscription.unsubscribe();
  }, [client, key, onEventRef, onErrorRef]);
  return key;
}

const NO_EVENTS: never[] = [];

/**
 * The latest `limit` events selected by `filter`, oldest first; a new filter starts a new list.
 * The filter is compared by value, so an inline object literal does not resubscribe on every
 * render (nor does a new `limit`: it applies from the next event).
 */
export function useEventStream<T extends string = string>(
  filter: StreamFilter<T>,
  { limit = 50, onError }: UseEventStreamOptions = {},
): EventOf<T>[] {
  const [kept, setKept] = useState<{ key: string; events: EventOf<T>[] } | null>(null);
  const key = useSubscription(
    filter,
    (event, eventKey) =>
      setKept((previous) => ({
        key: eventKey,
        events: [...(previous?.key === eventKey ? previous.events : []), event as EventOf<T>].slice(-limit),
      })),
    onError,
  );
  // A new filter forgets the previous one's list (also for a later return to that filter).
  if (kept !== null && kept.key !== key) setKept(null);
  return kept && kept.key === key ? kept.events : NO_EVENTS;
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

/**
 * Why the provider's streams are not open (`client.lastError`): the error of the latest failed
 * attempt of a stream that is still retrying — `getToken` failed, the bus cannot be reached, a
 * broken stream — or null, which it becomes again once the streams open. Show it beside
 * {@link useEventBusStatus}, so that a page says why it is reconnecting instead of only that it is.
 */
export function useEventBusError(): Error | null {
  const client = useEventBusClient();
  return useSyncExternalStore(
    useCallback((onChange: () => void) => client.onErrorChange(onChange), [client]),
    () => client.lastError,
    () => null,
  );
}
