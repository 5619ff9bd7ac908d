/**
 * The page's calls to its application backend (same origin, see `backend.ts`). Each one fails with
 * an error that says why, for the page to show: the backend's own `error` (e.g. `the bus answered
 * 403 (…)`), or that the backend cannot be reached.
 */

/** Calls the backend; resolves to its JSON answer, or rejects with a message that says why. */
async function callBackend(path: string, what: string, init: RequestInit = {}): Promise<Record<string, unknown>> {
  let response: Response;
  try {
    response = await fetch(path, { credentials: 'same-origin', ...init });
  } catch (error) {
    throw new Error(`cannot reach the backend to ${what}: ${error instanceof Error ? error.message : String(error)}`);
  }
  const body = (await response.json().catch(() => ({}))) as Record<string, unknown>;
  if (!response.ok) {
    const why = typeof body.error === 'string' ? body.error : `it answered ${response.status} ${response.statusText}`.trim();
    throw new Error(`the backend could not ${what}: ${why}`);
  }
  return body;
}

/** The client's `getToken`: a stream token from the backend (`GET /api/stream-token`). */
export async function getToken(): Promise<string> {
  const { token } = await callBackend('/api/stream-token', 'get a stream token');
  if (typeof token !== 'string') throw new Error('the backend could not get a stream token: its answer has none');
  return token;
}

/** The "publish a test update" button: the backend publishes `project.updated` (`POST /api/publish`). */
export async function publishTestUpdate(projectId: string, name: string): Promise<void> {
  await callBackend('/api/publish', 'publish', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ projectId, name }),
  });
}
