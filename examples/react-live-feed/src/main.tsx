/**
 * Entry point. Settings come from the query string so one build serves any bus:
 * `?bus=http://127.0.0.1:3002&project=p_demo` (plus optional `transport`).
 *
 * The page holds no API key: its stream token comes from the application backend
 * (`GET /api/stream-token`, see `backend.ts`), through `getToken` (`api.ts`). The client calls it
 * before every (re)connection, so when a token expires the stream resumes with a new one; when it
 * fails, the page shows why (`useEventBusError`) while the client keeps retrying.
 */
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { EventBusClient } from '@situs/event-bus-client';
import { EventBusProvider } from '@situs/event-bus-client/react';
import { getToken } from './api.js';
import { App } from './App.js';

const params = new URLSearchParams(window.location.search);
const transport = params.get('transport');

const client = new EventBusClient({
  url: params.get('bus') ?? 'http://127.0.0.1:3002',
  getToken,
  ...(transport === 'fetch' || transport === 'eventsource' ? { transport } : {}),
  reconnectBackoff: { initialDelayMs: 250, maxDelayMs: 2000 },
});

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <EventBusProvider client={client}>
      <App projectId={params.get('project') ?? 'p_demo'} />
    </EventBusProvider>
  </StrictMode>,
);
