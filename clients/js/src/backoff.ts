/** Exponential backoff with jitter, and `Retry-After` parsing, shared by publishing and streaming. */

/** How retries are spaced. */
export interface BackoffOptions {
  /** The first delay, in ms (default 250). */
  initialDelayMs?: number;
  /** The largest delay, in ms (default 10 000). */
  maxDelayMs?: number;
  /** The growth factor between attempts (default 2). */
  factor?: number;
}

/**
 * The delay before retry number `attempt` (0-based): "equal jitter", i.e. half of the exponential
 * step plus a random part of the other half, so that clients restarted together spread out but
 * never retry at once.
 */
export function backoffDelay(attempt: number, options: BackoffOptions = {}, random: () => number = Math.random): number {
  const initial = options.initialDelayMs ?? 250;
  const max = options.maxDelayMs ?? 10_000;
  const factor = options.factor ?? 2;
  const step = Math.min(max, initial * Math.pow(factor, Math.min(attempt, 60)));
  return Math.round(step / 2 + random() * (step / 2));
}

/** A `Retry-After` header value (seconds, or an HTTP date) in ms from `now`; undefined if absent or invalid. */
export function parseRetryAfter(value: string | null | undefined, now: number = Date.now()): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

/** Resolves after `ms`, or rejects at once when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
