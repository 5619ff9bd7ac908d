/**
 * The console's calls to the bus: the public HTTP API, with the signed-in key as a bearer token.
 * Every refusal becomes the client's `ProblemError` (the bus's problem+json), so a view can say
 * what went wrong: 401 (the key is not accepted), 403 (this key may not see it), or the detail.
 */
import { NetworkError, ProblemError, problemFromResponse } from '@situs/event-bus-client';
import { useCallback, useEffect, useRef, useState } from 'react';

export type Query = Record<string, string | number | boolean | undefined | null>;

/** The API as one signed-in key sees it. */
export class Api {
  constructor(
    readonly key: string,
    readonly base: string = location.origin,
  ) {}

  /** `path` with the parameters that are set. */
  url(path: string, query: Query = {}): string {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(query)) {
      if (value !== undefined && value !== null && value !== '') params.set(name, String(value));
    }
    const qs = params.toString();
    return `${this.base}${path}${qs ? `?${qs}` : ''}`;
  }

  async request<T>(method: string, path: string, query?: Query, body?: unknown, signal?: AbortSignal): Promise<T> {
    let response: Response;
    try {
      response = await fetch(this.url(path, query), {
        method,
        headers: {
          authorization: `Bearer ${this.key}`,
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        ...(signal ? { signal } : {}),
      });
    } catch (cause) {
      if (signal?.aborted) throw cause;
      throw new NetworkError(`cannot reach the event bus at ${this.base}`, { cause });
    }
    if (!response.ok) throw await problemFromResponse(response);
    if (response.status === 204) return undefined as T;
    const text = await response.text();
    return (text ? JSON.parse(text) : undefined) as T;
  }

  get<T>(path: string, query?: Query, signal?: AbortSignal): Promise<T> {
    return this.request<T>('GET', path, query, undefined, signal);
  }

  post<T>(path: string, body?: unknown, query?: Query): Promise<T> {
    return this.request<T>('POST', path, query, body);
  }
}

/** What a view shows of a load: its data, its error, whether it is running, and a way to run it again. */
export interface Resource<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  reload: () => void;
}

/**
 * Loads `load()` when `key` changes (and on `reload`), every `refreshMs` when given; an older
 * answer never overwrites a newer one, and a failed refresh keeps the last data beside its error.
 */
export function useResource<T>(load: (signal: AbortSignal) => Promise<T>, key: string, refreshMs?: number): Resource<T> {
  const [state, setState] = useState<{ key: string; data: T | undefined; error: unknown; loading: boolean }>({
    key,
    data: undefined,
    error: undefined,
    loading: true,
  });
  const [tick, setTick] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  useEffect(() => {
    const controller = new AbortController();
    setState((s) => (s.key === key ? { ...s, loading: true } : { key, data: undefined, error: undefined, loading: true }));
    loadRef.current(controller.signal).then(
      (data) => !controller.signal.aborted && setState({ key, data, error: undefined, loading: false }),
      (error) => !controller.signal.aborted && setState((s) => ({ key, data: s.key === key ? s.data : undefined, error, loading: false })),
    );
    return () => controller.abort();
  }, [key, tick]);
  useEffect(() => {
    if (!refreshMs) return;
    const timer = setInterval(() => setTick((t) => t + 1), refreshMs);
    return () => clearInterval(timer);
  }, [refreshMs]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  const current = state.key === key ? state : { data: undefined, error: undefined, loading: true };
  return { data: current.data, error: current.error, loading: current.loading, reload };
}

/** Whether `error` is the bus refusing this key (401) or this view to this key (403). */
export function refusal(error: unknown): 401 | 403 | undefined {
  if (error instanceof ProblemError && (error.status === 401 || error.status === 403)) return error.status;
  return undefined;
}

/** The trace id of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`). */
export function traceId(traceparent: unknown): string | undefined {
  if (typeof traceparent !== 'string') return undefined;
  const parts = traceparent.split('-');
  return parts.length === 4 && parts[1]?.length === 32 ? parts[1] : undefined;
}
