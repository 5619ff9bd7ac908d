/**
 * The application backend's side of the page: the browser never holds an API key.
 *
 * - `GET /api/stream-token` — the page's `getToken`: a short-lived stream token, minted with
 *   `POST /v1/tokens` and the backend's own key (which needs `subscribe`). A real backend checks
 *   its user's session first and narrows `projectIds`/`types` to what that user may see.
 * - `POST /api/publish` — the page's "publish a test update" button: publishing needs a key with
 *   `publish`, so it goes through the backend too.
 *
 * When the bus refuses or cannot be reached, both answer `502 {"error": "…"}` saying why (e.g.
 * `the bus answered 403 (Not allowed: …)`), and the page shows it.
 *
 * Exported as a Connect-style middleware: `vite.config.ts` mounts it on the dev server, and the
 * client package's end-to-end test on its page server.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { EventBusClient, EventType, ProblemError } from '@situs/event-bus-client';

/** Options of {@link createBackend}. */
export interface BackendOptions {
  /** The bus URL, as the backend reaches it. */
  busUrl: string;
  /** The backend's API key: `subscribe` (for tokens) and `publish` (for the test button). */
  apiKey: string;
  /** Lifetime of the page's stream tokens (default 300 s); the page fetches a new one on expiry. */
  ttlSeconds?: number;
}

type Next = (error?: unknown) => void;

/** Why a call to the bus failed, in words the page can show. */
function reason(error: unknown): string {
  if (error instanceof ProblemError) return `the bus answered ${error.status} (${error.message})`;
  if (!(error instanceof Error)) return String(error);
  // Node's fetch says only "fetch failed"; its cause says why (e.g. connect ECONNREFUSED).
  return error.cause === undefined ? error.message : `${error.message}: ${reason(error.cause)}`;
}

export function createBackend({ busUrl, apiKey, ttlSeconds = 300 }: BackendOptions) {
  const bus = new EventBusClient({ url: busUrl, apiKey, maxRetries: 2 });
  const send = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(body));
  };

  return async (req: IncomingMessage, res: ServerResponse, next?: Next): Promise<void> => {
    const { pathname } = new URL(req.url ?? '/', 'http://localhost');
    const isApi = pathname === '/api/stream-token' || pathname === '/api/publish';
    if (isApi && !apiKey) return send(res, 500, { error: 'the backend has no API key for the bus (set EVENT_BUS_API_KEY)' });
    try {
      if (req.method === 'GET' && pathname === '/api/stream-token') {
        // What a real backend does after checking the session: the same call with its key.
        const tokensUrl = `${busUrl.replace(/\/+$/, '')}/v1/tokens`;
        const answer = await fetch(tokensUrl, {
          method: 'POST',
          headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
          body: JSON.stringify({ types: ['project.*'], ttlSeconds }),
        }).catch((cause: unknown) => {
          throw new Error(`cannot reach the bus at ${tokensUrl}`, { cause });
        });
        const body = (await answer.json().catch(() => ({}))) as { token?: string; expiresAt?: string; title?: string; detail?: string };
        if (answer.status !== 201 || !body.token) {
          const why = [body.title ?? answer.statusText, body.detail].filter(Boolean).join(': ');
          return send(res, 502, { error: `the bus answered ${answer.status}${why ? ` (${why})` : ''}` });
        }
        return send(res, 200, { token: body.token, expiresAt: body.expiresAt });
      }
      if (req.method === 'POST' && pathname === '/api/publish') {
        const chunks: Buffer[] = [];
        for await (const chunk of req) chunks.push(chunk as Buffer);
        const input = JSON.parse(Buffer.concat(chunks).toString() || '{}') as { projectId?: unknown; name?: unknown };
        if (typeof input.projectId !== 'string' || !input.projectId) return send(res, 400, { error: 'projectId is required' });
        const projectId = input.projectId;
        const name = typeof input.name === 'string' ? input.name : 'Renamed';
        const stored = await bus.publish({ type: EventType.PROJECT_UPDATED, projectId, payload: { projectId, name } });
        return send(res, 201, stored);
      }
    } catch (error) {
      return send(res, 502, { error: reason(error) });
    }
    if (next) next();
    else send(res, 404, { error: 'not found' });
  };
}
