/**
 * Errors raised by the client. Every answer of the bus that is not a success becomes a
 * {@link ProblemError} carrying the RFC 9457 problem body (`type`, `title`, `status`, `detail`,
 * `errors[].field`) — among them `401` (missing, wrong or expired key or token), `403` (the key or
 * token lacks the permission, tenant, project or type) and `429` (rate or connection limit, with
 * `retryAfterMs`); a request that never got an answer becomes a {@link NetworkError}.
 */

/** One entry of a problem's `errors` list: the field (e.g. `payload/total`, `3/type`) and why. */
export interface ProblemFieldError {
  field: string;
  message: string;
}

/** An RFC 9457 problem body as the bus sends it. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  errors?: ProblemFieldError[];
  [extension: string]: unknown;
}

/** The base class of every error thrown by this package. */
export class EventBusError extends Error {
  override name = 'EventBusError';
}

/** The bus answered with an error status; `problem` is its body. */
export class ProblemError extends EventBusError {
  override name = 'ProblemError';
  readonly status: number;
  readonly type: string;
  readonly title: string;
  readonly detail: string | undefined;
  readonly errors: ProblemFieldError[];
  readonly problem: Problem;
  /** The `Retry-After` the bus asked for, in milliseconds, when it sent one. */
  readonly retryAfterMs: number | undefined;

  constructor(problem: Problem, retryAfterMs?: number) {
    super(problem.detail ? `${problem.title}: ${problem.detail}` : problem.title);
    this.problem = problem;
    this.status = problem.status;
    this.type = problem.type;
    this.title = problem.title;
    this.detail = problem.detail;
    this.errors = problem.errors ?? [];
    this.retryAfterMs = retryAfterMs;
  }

  /** The first invalid field, when the bus named one (`errors[0].field`). */
  get field(): string | undefined {
    return this.errors[0]?.field;
  }
}

/**
 * A stream's token expired (the bus ended the stream with `token_expired`, or the configured token
 * was already past its `exp`) and the client has no `getToken` to fetch a fresh one. The stream is
 * closed; `lastEventId` is where a new subscription (`after`) would resume.
 */
export class TokenExpiredError extends EventBusError {
  override name = 'TokenExpiredError';
  readonly lastEventId: number | null;
  constructor(message: string, lastEventId: number | null) {
    super(message);
    this.lastEventId = lastEventId;
  }
}

/** The request could not reach the bus (connection refused, reset, aborted…). */
export class NetworkError extends EventBusError {
  override name = 'NetworkError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Reads an error answer into a {@link ProblemError}, whatever its body. */
export async function problemFromResponse(response: Response, retryAfterMs?: number): Promise<ProblemError> {
  const text = await response.text().catch(() => '');
  let problem: Problem | undefined;
  try {
    const body: unknown = JSON.parse(text);
    if (body && typeof body === 'object' && !Array.isArray(body)) {
      const b = body as Record<string, unknown>;
      problem = {
        ...b,
        type: typeof b.type === 'string' ? b.type : 'about:blank',
        title: typeof b.title === 'string' ? b.title : response.statusText || `HTTP ${response.status}`,
        status: typeof b.status === 'number' ? b.status : response.status,
        ...(typeof b.detail === 'string' ? { detail: b.detail } : {}),
        ...(Array.isArray(b.errors) ? { errors: b.errors as ProblemFieldError[] } : {}),
      };
    }
  } catch {
    // Not JSON: fall through to a generic problem.
  }
  problem ??= {
    type: 'about:blank',
    title: response.statusText || `HTTP ${response.status}`,
    status: response.status,
    ...(text ? { detail: text.slice(0, 500) } : {}),
  };
  return new ProblemError(problem, retryAfterMs);
}
