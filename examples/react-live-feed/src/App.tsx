/**
 * A live feed of one project's events, built from the package's hooks. The test button publishes
 * through the application backend (`POST /api/publish`): publishing needs an API key, which the
 * page does not have.
 */
import { useState } from 'react';
import { EventType } from '@situs/event-bus-client';
import { useEventBus, useEventBusStatus, useEventStream } from '@situs/event-bus-client/react';

interface ProjectUpdate {
  projectId: string;
  name?: string;
}

export function App({ projectId }: { projectId: string }) {
  const status = useEventBusStatus();
  const [streamError, setStreamError] = useState<string | null>(null);
  // A stream stops for good only on a refusal (e.g. the backend's key lost `subscribe`).
  const events = useEventStream({ types: ['project.*'], projectId }, { limit: 100, onError: (e) => setStreamError(e.message) });
  const lastUpdate = useEventBus<ProjectUpdate>(EventType.PROJECT_UPDATED);
  const [sending, setSending] = useState(false);

  const sendTest = async () => {
    setSending(true);
    try {
      const response = await fetch('/api/publish', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ projectId, name: `Renamed at ${new Date().toLocaleTimeString()}` }),
      });
      if (!response.ok) throw new Error(`publish failed (${response.status})`);
    } finally {
      setSending(false);
    }
  };

  return (
    <main style={{ fontFamily: 'system-ui, sans-serif', maxWidth: 720, margin: '2rem auto' }}>
      <h1>Project {projectId}</h1>
      <p>
        Connection: <strong id="status" data-status={status}>{status}</strong>
      </p>
      {streamError && (
        <p id="stream-error" role="alert">
          Stream stopped: {streamError}
        </p>
      )}
      <p>
        Latest name: <span id="latest-name">{lastUpdate?.name ?? '—'}</span>
      </p>
      <button id="publish" onClick={() => void sendTest()} disabled={sending}>
        Publish a test update
      </button>
      <h2>Live feed ({events.length})</h2>
      <ol id="feed" reversed>
        {[...events].reverse().map((e) => (
          <li key={e.id} data-seq={e.seq} data-type={e.type} data-n={String((e.payload as { n?: number }).n ?? '')}>
            <code>#{e.seq}</code> {e.type} <small>{new Date(e.timestamp).toLocaleTimeString()}</small>{' '}
            <code>{JSON.stringify(e.payload)}</code>
          </li>
        ))}
      </ol>
    </main>
  );
}
