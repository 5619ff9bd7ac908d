/**
 * The console's frame: sign-in with an API key (kept in `sessionStorage` for this tab, never in
 * the URL), the navigation, and the views. Routes live in the fragment (`#/webhooks/<id>`), so the
 * server serves one page for all of them.
 */
import { EventBusClient } from '@situs/event-bus-client';
import { EventBusProvider } from '@situs/event-bus-client/react';
import { useEffect, useMemo, useState, type FormEvent } from 'react';
import { Api } from './api';
import { ErrorBox, ViewBoundary } from './ui/states';
import { Consumers } from './views/Consumers';
import { EventTypes } from './views/EventTypes';
import { Overview } from './views/Overview';
import { Search } from './views/Search';
import { Tail } from './views/Tail';
import { Webhooks } from './views/Webhooks';

const KEY_STORAGE = 'situs-event-bus-console.key';

const VIEWS = [
  ['overview', 'Overview'],
  ['tail', 'Live tail'],
  ['search', 'Search'],
  ['types', 'Event types'],
  ['webhooks', 'Webhooks'],
  ['consumers', 'Consumers & plugins'],
] as const;

type ViewName = (typeof VIEWS)[number][0];

function useRoute(): [ViewName, string | undefined, (view: ViewName, param?: string) => void] {
  const read = () => {
    const [view, param] = location.hash.replace(/^#\/?/, '').split('/');
    const known = VIEWS.find(([name]) => name === view)?.[0] ?? 'overview';
    return [known, param ? decodeURIComponent(param) : undefined] as const;
  };
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const onChange = () => setRoute(read());
    addEventListener('hashchange', onChange);
    return () => removeEventListener('hashchange', onChange);
  }, []);
  const go = (view: ViewName, param?: string) => {
    location.hash = `#/${view}${param ? `/${encodeURIComponent(param)}` : ''}`;
  };
  return [route[0], route[1], go];
}

export function App() {
  const [key, setKey] = useState(() => sessionStorage.getItem(KEY_STORAGE));
  const signIn = (k: string) => {
    sessionStorage.setItem(KEY_STORAGE, k);
    setKey(k);
  };
  const signOut = () => {
    sessionStorage.removeItem(KEY_STORAGE);
    setKey(null);
  };
  return key ? <Signed key={key} apiKey={key} onSignOut={signOut} /> : <SignIn onSignIn={signIn} />;
}

function SignIn({ onSignIn }: { onSignIn: (key: string) => void }) {
  const [key, setKey] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const submit = (e: FormEvent) => {
    e.preventDefault();
    const k = key.trim();
    if (!k) return;
    setBusy(true);
    setError(null);
    // Any key may read the catalogue: a 401 here means the key itself is refused.
    new Api(k).get('/v1/event-types').then(
      () => onSignIn(k),
      (err) => {
        setError(err);
        setBusy(false);
      },
    );
  };
  return (
    <main className="signin">
      <form onSubmit={submit} aria-label="sign in">
        <h1>
          <Logo /> Situs Event Bus
        </h1>
        <p className="muted">Sign in with an API key. It is kept in this tab only, until you sign out or close it.</p>
        <label>
          API key
          <input
            type="password"
            name="apiKey"
            autoComplete="off"
            spellCheck={false}
            value={key}
            onChange={(e) => setKey(e.target.value)}
            placeholder="ebk_…"
            autoFocus
          />
        </label>
        <button type="submit" disabled={busy || !key.trim()}>
          {busy ? 'Checking…' : 'Sign in'}
        </button>
        {error !== null && <ErrorBox error={error} />}
      </form>
    </main>
  );
}

function Signed({ apiKey, onSignOut }: { apiKey: string; onSignOut: () => void }) {
  const api = useMemo(() => new Api(apiKey), [apiKey]);
  const client = useMemo(() => new EventBusClient({ url: location.origin, apiKey, transport: 'fetch' }), [apiKey]);
  useEffect(() => () => client.close(), [client]);
  const [view, param, go] = useRoute();
  const [menu, setMenu] = useState(false);
  return (
    <EventBusProvider client={client}>
      <div className="layout">
        <header className="topbar">
          <span className="brand">
            <Logo /> Event Bus
          </span>
          <button type="button" className="menu-toggle" aria-expanded={menu} onClick={() => setMenu(!menu)}>
            ☰ {VIEWS.find(([name]) => name === view)?.[1]}
          </button>
          <nav className={menu ? 'open' : ''} aria-label="views">
            {VIEWS.map(([name, label]) => (
              <a
                key={name}
                href={`#/${name}`}
                aria-current={name === view ? 'page' : undefined}
                onClick={() => setMenu(false)}
              >
                {label}
              </a>
            ))}
          </nav>
          <span className="who" title="the signed-in key">
            {keyLabel(apiKey)}
          </span>
          <button type="button" className="link signout" onClick={onSignOut}>
            Sign out
          </button>
        </header>
        <main className="content">
          <ViewBoundary key={view}>
            {view === 'overview' && <Overview api={api} />}
            {view === 'tail' && <Tail api={api} />}
            {view === 'search' && <Search api={api} />}
            {view === 'types' && <EventTypes api={api} />}
            {view === 'webhooks' && <Webhooks api={api} selected={param} onSelect={(id) => go('webhooks', id)} />}
            {view === 'consumers' && <Consumers api={api} />}
          </ViewBoundary>
        </main>
      </div>
    </EventBusProvider>
  );
}

/** What the page shows of the key: the public id of an `ebk_<id>_<secret>` key, never a secret. */
function keyLabel(key: string): string {
  const [prefix, id] = key.split('_');
  return prefix === 'ebk' && id ? `key ebk_${id}` : 'bootstrap admin key';
}

function Logo() {
  return (
    <svg className="logo" viewBox="0 0 24 24" aria-hidden="true">
      <circle cx="5" cy="12" r="3" />
      <circle cx="19" cy="5" r="2.5" />
      <circle cx="19" cy="12" r="2.5" />
      <circle cx="19" cy="19" r="2.5" />
      <path d="M8 12h8.5M7.5 10.5 16.8 6M7.5 13.5l9.3 4.5" />
    </svg>
  );
}
