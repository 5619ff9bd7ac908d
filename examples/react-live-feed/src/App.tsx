/**
 * A live feed of one project's events, built from the package's hooks. The test button publishes
 * through the application backend (`POST /api/publish`): publishing needs an API key, which the
 * page does not have. When the stream cannot connect or a publish fails, the page says why.
 */
import { useState } from 'react';
import { EventType } from '@situs/event-bus-client';
import { useEventBus, useEventBusError, useEventBusStatus, useEventStream } from '@situs/event-bus-client/react';
import { publishTestUpdate } from './api.js';

interface ProjectUpdate {
  projectId: string;
  name?: string;
}

export function App({ projectId }: { projectId: string }) {
  const status = useEventBusStatus();
  // Why the stream is not open while the client retries (e.g. the backend got no token).
  const connectionError = useEventBusError();
  const [streamError, setStreamError] = useState<string | null>(null);
  // A stream stops for good only on a refusal (e.g. the backend's key lost `subscribe`).
  const events = useEventStream({ types: ['project.*'], projectId }, { limit: 100, onError: (e) => setStreamError(e.message) });
  // This project's updates only; the same scope as the feed, so both share one connection.
  const lastUpdate = useEventBus<ProjectUpdate>({ types: [EventType.PROJECT_UPDATED], projectId });
  const [sending, setSending] = useState(false);
  const [publishError, setPublishError] = useState<string | null>(null);

  const sendTest = async () => {
    setSending(true);
    setPublishError(null);
    try {
      await publishTestUpdate(projectId, `Renamed at ${new Date().toLocaleTimeString()}`);
    } catch (error) {
      setPublishError(error instanceof Error ? error.message : String(error));
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
      {connectionError && (
        <p id="connection-error" role="alert">
          Not connected: {connectionError.message}
        </p>
      )}
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
      {publishError && (
        <p id="publish-error" role="alert">
          Publish failed: {publishError}
        </p>
      )}
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
