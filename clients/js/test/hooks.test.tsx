// @vitest-environment happy-dom
// The React hooks rendered with react-dom under StrictMode, against the real bus.
import { StrictMode, useState } from 'react';
import { flushSync } from 'react-dom';
import { createRoot, type Root } from 'react-dom/client';
import { afterEach, beforeAll, afterAll, describe, expect, it } from 'vitest';
import { EventBusClient, type StreamRequest } from '../src/index.js';
import { EventBusProvider, useEventBus, useEventBusStatus, useEventStream, usePublish } from '../src/react/index.js';
import { fetchTransport } from '../src/transport/index.js';
import { ADMIN_KEY, killBus, mintToken, startBus, waitFor, type Bus } from './helpers/bus.js';

// Updates arrive from the network, outside act(): let React schedule them as in a browser.
(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = false;

let bus: Bus;
beforeAll(async () => {
  bus = await startBus();
});
afterAll(async () => {
  if (bus) await killBus(bus);
});

const roots: Root[] = [];
const cleanupConsole: (() => void)[] = [];
afterEach(() => {
  for (const r of roots.splice(0)) r.unmount();
  for (const f of cleanupConsole.splice(0)) f();
});

function setup() {
  const attempts: StreamRequest[] = [];
  const inner = fetchTransport();
  const client = new EventBusClient({
    url: bus.url,
    apiKey: ADMIN_KEY,
    transport: (req) => {
      attempts.push(req);
      return inner(req);
    },
  });
  const container = document.createElement('div');
  document.body.appendChild(container);
  const root = createRoot(container);
  roots.push(root);
  return { client, attempts, container, root };
}

function Feed({ projectId }: { projectId: string }) {
  const events = useEventStream({ types: ['project.*'], projectId }, { limit: 3 });
  const status = useEventBusStatus();
  return (
    <div>
      <p data-testid="status">{status}</p>
      <ul>
        {events.map((e) => (
          <li key={e.id}>{`${e.seq}:${(e.payload as { n: number }).n}`}</li>
        ))}
      </ul>
    </div>
  );
}

function Latest() {
  const latest = useEventBus<{ name: string }>('user.updated');
  return <span id="latest">{latest ? latest.name : 'none'}</span>;
}

const items = (c: HTMLElement) => [...c.querySelectorAll('li')].map((li) => li.textContent);

describe('React hooks (StrictMode)', () => {
  it('useEventStream keeps the latest N, once each; status follows the connection; unmount closes it', async () => {
    const { client, attempts, container, root } = setup();
    root.render(
      <StrictMode>
        <EventBusProvider client={client}>
          <Feed projectId="p1" />
          <Latest />
        </EventBusProvider>
      </StrictMode>,
    );
    await waitFor(() => container.querySelector('[data-testid=status]')?.textContent === 'open', 'status open');
    // StrictMode mounted every effect twice; each scope's connection was opened once (the feed's
    // for project p1, useEventBus's for every project).
    expect(attempts.map((a) => new URL(a.url).searchParams.get('projectId')).sort()).toEqual(['p1', null].sort());

    for (let n = 1; n <= 4; n++) await client.publish({ type: 'project.updated', payload: { n }, projectId: 'p1' });
    await client.publish({ type: 'project.updated', payload: { n: 100 }, projectId: 'p2' });
    await client.publish({ type: 'user.updated', payload: { name: 'Ada' } });
    await waitFor(() => container.querySelector('#latest')?.textContent === 'Ada', 'the latest user payload');
    await waitFor(() => items(container).at(-1)?.endsWith(':4'), 'the fourth event');
    expect(items(container).map((t) => t!.split(':')[1])).toEqual(['2', '3', '4']);

    root.unmount();
    roots.length = 0;
    await waitFor(() => client.status === 'closed', 'the connection to close after unmount');
  });

  it('usePublish publishes through the provider client', async () => {
    const { client, container, root } = setup();
    let publish: ReturnType<typeof usePublish> | undefined;
    function Publisher() {
      publish = usePublish();
      const [seq, setSeq] = useState<number | null>(null);
      return (
        <button id="go" onClick={() => void publish!({ type: 'menu.item_updated', payload: { item: 'soup' } }).then((e) => setSeq(e.seq))}>
          {seq === null ? 'publish' : `published ${seq}`}
        </button>
      );
    }
    root.render(
      <StrictMode>
        <EventBusProvider client={client}>
          <Publisher />
        </EventBusProvider>
      </StrictMode>,
    );
    await waitFor(() => container.querySelector('#go'), 'the button');
    (container.querySelector('#go') as HTMLButtonElement).click();
    await waitFor(() => container.querySelector('#go')!.textContent!.startsWith('published'), 'the publish');
    const seq = Number(container.querySelector('#go')!.textContent!.split(' ')[1]);
    const stored = [];
    for await (const e of client.queryEvents({ type: 'menu.item_updated', after: seq - 1, limit: 1 })) stored.push(e);
    expect(stored[0]).toMatchObject({ seq, payload: { item: 'soup' } });
  });

  it('changing the filter resubscribes; unrelated re-renders do not', async () => {
    const { client, attempts, container, root } = setup();
    const tree = (projectId: string) => (
      <StrictMode>
        <EventBusProvider client={client}>
          <Feed projectId={projectId} />
        </EventBusProvider>
      </StrictMode>
    );
    root.render(tree('a'));
    await waitFor(() => client.status === 'open', 'the first stream');
    root.render(tree('a'));
    await new Promise((r) => setTimeout(r, 50));
    expect(attempts).toHaveLength(1);
    root.render(tree('b'));
    await waitFor(() => attempts.length === 2 && client.status === 'open', 'the second stream');
    expect(new URL(attempts[1]!.url).searchParams.get('projectId')).toBe('b');
    await client.publish({ type: 'project.created', payload: { n: 7 }, projectId: 'b' });
    await waitFor(() => items(container).length === 1, 'the event for b');
    // The stream of `a` was closed when its last subscriber left.
    await waitFor(() => attempts[0]!.signal.aborted, 'the first stream to close');
  });

  it('a provider built from options streams with getToken, as a browser page does', async () => {
    const container = document.createElement('div');
    document.body.appendChild(container);
    const root = createRoot(container);
    roots.push(root);
    const publisher = new EventBusClient({ url: bus.url, apiKey: ADMIN_KEY });
    const tokens: string[] = [];
    // A new options object and callback on every render: the provider keeps its one client.
    const tree = () => (
      <StrictMode>
        <EventBusProvider
          options={{
            url: bus.url,
            transport: 'fetch',
            getToken: async () => {
              const { token } = await mintToken(bus, { types: ['project.*'], projectIds: ['tokp'] });
              tokens.push(token);
              return token;
            },
          }}
        >
          <Feed projectId="tokp" />
        </EventBusProvider>
      </StrictMode>
    );
    root.render(tree());
    await waitFor(() => container.querySelector('[data-testid=status]')?.textContent === 'open', 'status open');
    root.render(tree());
    await publisher.publish({ type: 'project.created', payload: { n: 1 }, projectId: 'tokp' });
    await waitFor(() => items(container).length === 1, 'the event');
    expect(items(container)[0]).toMatch(/:1$/);
    expect(tokens.length).toBeGreaterThanOrEqual(1);
  });

  it('throws a clear error outside the provider', () => {
    // React logs the error it rethrows; keep the test output quiet.
    const consoleError = console.error;
    console.error = () => undefined;
    cleanupConsole.push(() => (console.error = consoleError));
    const container = document.createElement('div');
    const root = createRoot(container);
    function Bad() {
      useEventBusStatus();
      return null;
    }
    const errors: unknown[] = [];
    const onError = (e: ErrorEvent) => {
      errors.push(e.error);
      e.preventDefault();
    };
    window.addEventListener('error', onError);
    expect(() => {
      // Render synchronously so the error surfaces here.
      flushSync(() => root.render(<Bad />));
    }).toThrow(/EventBusProvider/);
    window.removeEventListener('error', onError);
  });
});
