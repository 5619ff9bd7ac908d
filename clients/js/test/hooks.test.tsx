// @vitest-environment happy-dom
// The React hooks rendered with react-dom under StrictMode, against the real bus.
import { StrictMode, useState } from 'react';
import { flushSync } from 'react-dom';
import { createRoot, type Root } from 'react-dom/client';
import { afterEach, beforeAll, afterAll, describe, expect, it } from 'vitest';
import { EventBusClient, type StreamRequest } from '../src/index.js';
import { EventBusProvider, useEventBus, useEventBusError, useEventBusStatus, useEventStream, usePublish } from '../src/react/index.js';
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
const text = (c: HTMLElement, selector: string) => c.querySelector(selector)?.textContent;
/** The `projectId` of each stream request, sorted (null: every project). */
const scopes = (attempts: StreamRequest[]) => attempts.map((a) => new URL(a.url).searchParams.get('projectId') ?? '(all)').sort();

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
    await client.publish({ type: 'project.created', payload: { n: 6 }, projectId: 'a' });
    await waitFor(() => items(container).length === 1, 'the event for a');
    root.render(tree('a'));
    await new Promise((r) => setTimeout(r, 50));
    expect(attempts).toHaveLength(1);
    root.render(tree('b'));
    // The events of `a` are not events of `b`: the new filter starts an empty list.
    await waitFor(() => items(container).length === 0, 'the list of a to go');
    await waitFor(() => attempts.length === 2 && client.status === 'open', 'the second stream');
    expect(new URL(attempts[1]!.url).searchParams.get('projectId')).toBe('b');
    await client.publish({ type: 'project.created', payload: { n: 7 }, projectId: 'b' });
    await waitFor(() => items(container).length === 1, 'the event for b');
    expect(items(container)[0]).toMatch(/:7$/);
    // The stream of `a` was closed when its last subscriber left.
    await waitFor(() => attempts[0]!.signal.aborted, 'the first stream to close');
  });

  // Regression: useEventBus took no filter, so the example page's "Latest name" showed the
  // updates of every project.
  it('useEventBus with a project filter: an update of another project does not reach it', async () => {
    const { client, attempts, container, root } = setup();
    function Names({ projectId }: { projectId: string }) {
      const mine = useEventBus<{ name: string }>({ types: ['project.updated'], projectId });
      const every = useEventBus<{ name: string }>('project.updated');
      return (
        <p>
          <span id="mine">{mine ? mine.name : 'none'}</span>
          <span id="every">{every ? every.name : 'none'}</span>
        </p>
      );
    }
    const tree = (projectId: string) => (
      <StrictMode>
        <EventBusProvider client={client}>
          <Names projectId={projectId} />
        </EventBusProvider>
      </StrictMode>
    );
    root.render(tree('names-mine'));
    // Open: every stream the two hooks asked for in their first effects.
    await waitFor(() => client.status === 'open', 'the streams');
    await client.publish({ type: 'project.updated', projectId: 'names-mine', payload: { name: 'Ada' } });
    await waitFor(() => text(container, '#mine') === 'Ada' && text(container, '#every') === 'Ada', 'the update of the project');
    await client.publish({ type: 'project.updated', projectId: 'names-other', payload: { name: 'Eve' } });
    await waitFor(() => text(container, '#every') === 'Eve', 'the unfiltered hook to get the other project');
    // Without the filter both hooks would share one stream and have got "Eve" in the same dispatch.
    expect(text(container, '#mine')).toBe('Ada');
    // The filtered hook has a stream of its project; the other one of every project.
    expect(scopes(attempts)).toEqual(['(all)', 'names-mine']);

    // Another project: the payload of the previous one is not shown for it; its own updates are.
    root.render(tree('names-other'));
    await waitFor(() => text(container, '#mine') === 'none', 'the payload of the previous project to go');
    await waitFor(() => attempts.length === 3 && client.status === 'open', 'the stream of the other project');
    expect(new URL(attempts[2]!.url).searchParams.get('projectId')).toBe('names-other');
    await client.publish({ type: 'project.updated', projectId: 'names-other', payload: { name: 'Zoe' } });
    await waitFor(() => text(container, '#mine') === 'Zoe', 'the update of the other project');
  });

  it('useEventBusError says why the stream is not open (here: getToken fails), until it opens', async () => {
    const container = document.createElement('div');
    document.body.appendChild(container);
    const root = createRoot(container);
    roots.push(root);
    const publisher = new EventBusClient({ url: bus.url, apiKey: ADMIN_KEY });
    let tokenError: string | null = 'the backend could not get a stream token: the bus answered 403 Forbidden';
    let tokenCalls = 0;
    function Health() {
      const status = useEventBusStatus();
      const error = useEventBusError();
      const events = useEventStream({ types: ['project.*'], projectId: 'health' });
      return (
        <p id="health" data-status={status} data-events={events.length}>
          {error ? error.message : 'no error'}
        </p>
      );
    }
    root.render(
      <StrictMode>
        <EventBusProvider
          options={{
            url: bus.url,
            transport: 'fetch',
            reconnectBackoff: { initialDelayMs: 20, maxDelayMs: 100 },
            getToken: async () => {
              tokenCalls += 1;
              if (tokenError) throw new Error(tokenError);
              return (await mintToken(bus, { types: ['project.*'], projectIds: ['health'] })).token;
            },
          }}
        >
          <Health />
        </EventBusProvider>
      </StrictMode>,
    );
    await waitFor(() => container.querySelector('#health[data-status=reconnecting]')?.textContent?.includes('403 Forbidden'), 'the error');
    const health = () => container.querySelector('#health')!;
    expect(health().textContent).toBe(tokenError);
    // The client keeps retrying; once a token comes, the stream opens and the error goes.
    const callsWhileFailing = tokenCalls;
    tokenError = null;
    await waitFor(() => health().getAttribute('data-status') === 'open', 'the stream to open');
    expect(tokenCalls).toBeGreaterThan(callsWhileFailing);
    expect(health().textContent).toBe('no error');
    await publisher.publish({ type: 'project.created', projectId: 'health', payload: {} });
    await waitFor(() => health().getAttribute('data-events') === '1', 'the event');
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
