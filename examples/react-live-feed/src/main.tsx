/**
 * Entry point. Settings come from the query string so one build serves any bus:
 * `?bus=http://127.0.0.1:3002&project=p_demo` (plus optional `token`, `transport`).
 */
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { EventBusClient } from '@situs/event-bus-client';
import { EventBusProvider } from '@situs/event-bus-client/react';
import { App } from './App.js';

const params = new URLSearchParams(window.location.search);
const transport = params.get('transport');
const token = params.get('token');
const client = new EventBusClient({
  url: params.get('bus') ?? 'http://127.0.0.1:3002',
  ...(token ? { token } : {}),
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
