/**
 * Webhooks: the endpoints with their health, and for one endpoint its figures
 * (`GET /v1/webhooks/{id}/stats`), its deliveries and attempts (paged), and the operator's
 * actions (the figures and logs refresh every few seconds): retry a delivery, replay a range of `seq`s or times, rotate the secret, send a test,
 * enable or disable.
 */
import { useState, type FormEvent } from 'react';
import { useResource, type Api } from '../api';
import { ErrorBox, Loaded, Loading, Pager, Time, usePages } from '../ui/states';

export interface Endpoint {
  id: string;
  url: string;
  description?: string | null;
  eventTypes: string[];
  projectId?: string | null;
  tenantId?: string | null;
  ordered: boolean;
  format: string;
  disabled: boolean;
  disabledReason?: string | null;
  failingSince?: string | null;
  failureCount: number;
  createdAt: string;
}

export interface Delivery {
  id: number;
  endpointId: string;
  eventSeq: number;
  eventId: string;
  eventType: string;
  status: 'pending' | 'succeeded' | 'failed';
  attempts: number;
  nextAttemptAt?: string | null;
  createdAt: string;
  updatedAt: string;
  lastStatusCode?: number | null;
  lastError?: string | null;
}

interface Attempt {
  id: number;
  deliveryId: number;
  eventId: string;
  attempt: number;
  startedAt: string;
  durationMs: number;
  statusCode?: number | null;
  responseBody?: string | null;
  error?: string | null;
  success: boolean;
}

interface EndpointStats {
  since: string;
  attempts: number;
  succeeded: number;
  failed: number;
  successRate: number | null;
  meanDurationMs: number | null;
  lastAttemptAt: string | null;
  lastFailure: { at: string; statusCode?: number | null; error?: string | null } | null;
  deliveries: { pending: number; failed: number };
}

export function Webhooks({ api, selected, onSelect }: { api: Api; selected: string | undefined; onSelect: (id: string | undefined) => void }) {
  const list = useResource((signal) => api.get<{ webhooks: Endpoint[] }>('/v1/webhooks', {}, signal), api.key, 10_000);
  const endpoint = list.data?.webhooks.find((w) => w.id === selected);
  return (
    <section className="view">
      <header className="view-head">
        <h1>Webhooks</h1>
        <button type="button" onClick={list.reload}>
          Refresh
        </button>
      </header>
      <Loaded resource={list} isEmpty={(d) => d.webhooks.length === 0} empty={<>No webhook endpoint is visible to this key. Create one with POST /v1/webhooks.</>}>
        {(data) => (
          <div className="table-wrap">
            <table aria-label="webhook endpoints">
              <thead>
                <tr>
                  <th>url</th>
                  <th>types</th>
                  <th>state</th>
                  <th className="num">failure streak</th>
                  <th>failing since</th>
                </tr>
              </thead>
              <tbody>
                {data.webhooks.map((w) => (
                  <tr key={w.id} className={`clickable${w.id === selected ? ' selected' : ''}`} onClick={() => onSelect(w.id)} tabIndex={0} onKeyDown={(k) => k.key === 'Enter' && onSelect(w.id)}>
                    <td className="ellipsis" title={w.url}>
                      {w.url}
                      {w.description && <div className="muted small">{w.description}</div>}
                    </td>
                    <td>{w.eventTypes.join(', ')}</td>
                    <td>
                      <Health endpoint={w} />
                    </td>
                    <td className="num">{w.failureCount}</td>
                    <td>
                      <Time value={w.failingSince} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Loaded>
      {selected && list.data && !endpoint && <ErrorBox error={new Error(`No endpoint ${selected} is visible to this key.`)} />}
      {endpoint && <EndpointDetail key={endpoint.id} api={api} endpoint={endpoint} onChanged={list.reload} onClose={() => onSelect(undefined)} />}
    </section>
  );
}

function Health({ endpoint }: { endpoint: Endpoint }) {
  if (endpoint.disabled) {
    return (
      <span className="badge failed" title={endpoint.disabledReason ?? undefined}>
        disabled{endpoint.disabledReason ? `: ${endpoint.disabledReason}` : ''}
      </span>
    );
  }
  if (endpoint.failureCount > 0) return <span className="badge pending">failing</span>;
  return <span className="badge succeeded">healthy</span>;
}

function EndpointDetail({ api, endpoint, onChanged, onClose }: { api: Api; endpoint: Endpoint; onChanged: () => void; onClose: () => void }) {
  const base = `/v1/webhooks/${encodeURIComponent(endpoint.id)}`;
  const [message, setMessage] = useState<{ ok: boolean; text: string } | null>(null);
  const [refresh, setRefresh] = useState(0);
  // The last hour: the figures' cost grows with the attempts in the window.
  const stats = useResource(
    (signal) => api.get<EndpointStats>(`${base}/stats`, { since: new Date(Date.now() - 3_600_000).toISOString() }, signal),
    `${api.key}:${endpoint.id}:${refresh}`,
    5_000,
  );
  const act = (label: string, run: () => Promise<string>) => {
    setMessage({ ok: true, text: `${label}…` });
    run().then(
      (text) => {
        setMessage({ ok: true, text });
        onChanged();
        setRefresh((r) => r + 1);
      },
      (error: Error) => setMessage({ ok: false, text: `${label} failed: ${error.message}` }),
    );
  };
  return (
    <article className="panel" aria-label="endpoint detail">
      <header className="panel-head">
        <h2 className="ellipsis" title={endpoint.url}>
          {endpoint.url}
        </h2>
        <button type="button" className="close" onClick={onClose} aria-label="close">
          ×
        </button>
      </header>
      <div className="actions">
        <button
          type="button"
          onClick={() =>
            act('Test', async () => {
              const r = await api.post<{ success: boolean; statusCode?: number | null; durationMs: number; error?: string | null }>(`${base}/test`);
              return r.success ? `Test delivered: ${r.statusCode} in ${r.durationMs} ms` : `Test failed: ${r.statusCode ?? r.error ?? 'no answer'} (${r.durationMs} ms)`;
            })
          }
        >
          Send test
        </button>
        <button
          type="button"
          onClick={() =>
            act('Rotate', async () => {
              const r = await api.post<{ secret: string; previousSecretExpiresAt?: string }>(`${base}/rotate-secret`);
              return `New secret (shown once): ${r.secret}; the previous one signs until ${r.previousSecretExpiresAt ?? 'now'}`;
            })
          }
        >
          Rotate secret
        </button>
        {endpoint.disabled ? (
          <button type="button" onClick={() => act('Enable', async () => (await api.post(`${base}/enable`), 'Enabled'))}>
            Enable
          </button>
        ) : (
          <button type="button" className="danger" onClick={() => act('Disable', async () => (await api.post(`${base}/disable`), 'Disabled'))}>
            Disable
          </button>
        )}
        <ReplayForm
          onReplay={(since, until) =>
            act('Replay', async () => {
              const { queued } = await api.post<{ queued: number }>(`${base}/replay`, undefined, { since, until });
              return `Queued ${queued} ${queued === 1 ? 'delivery' : 'deliveries'}`;
            })
          }
        />
      </div>
      {message && (
        <p className={`notice ${message.ok ? 'ok' : 'bad'}`} role="status">
          {message.text}
        </p>
      )}
      <StatsBlock stats={stats} />
      <Deliveries api={api} base={base} refresh={refresh} onRetried={() => setRefresh((r) => r + 1)} />
      <Attempts api={api} base={base} refresh={refresh} />
    </article>
  );
}

/** A range of the log to deliver again: from a `seq` or time, up to a `seq` or time (or now). */
function ReplayForm({ onReplay }: { onReplay: (since: string, until: string | undefined) => void }) {
  const [since, setSince] = useState('');
  const [until, setUntil] = useState('');
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (since.trim()) onReplay(since.trim(), until.trim() || undefined);
  };
  return (
    <form className="inline replay" onSubmit={submit}>
      <input aria-label="replay since" value={since} onChange={(e) => setSince(e.target.value)} placeholder="from: seq or RFC 3339 time" />
      <input aria-label="replay until" value={until} onChange={(e) => setUntil(e.target.value)} placeholder="until (optional)" />
      <button type="submit" disabled={!since.trim()}>
        Replay
      </button>
    </form>
  );
}

function StatsBlock({ stats }: { stats: ReturnType<typeof useResource<EndpointStats>> }) {
  if (stats.error && !stats.data) return <ErrorBox error={stats.error} />;
  if (!stats.data) return <Loading />;
  const s = stats.data;
  return (
    <dl className="tiles" aria-label="endpoint health">
      <div>
        <dt>success rate (last hour)</dt>
        <dd data-testid="success-rate">{s.successRate === null ? '–' : `${(s.successRate * 100).toFixed(1)} %`}</dd>
      </div>
      <div>
        <dt>attempts</dt>
        <dd>
          {s.succeeded} ok · {s.failed} failed
        </dd>
      </div>
      <div>
        <dt>mean duration</dt>
        <dd>{s.meanDurationMs === null ? '–' : `${s.meanDurationMs.toFixed(1)} ms`}</dd>
      </div>
      <div>
        <dt>deliveries</dt>
        <dd>
          {s.deliveries.pending} pending · {s.deliveries.failed} dead letter{s.deliveries.failed === 1 ? '' : 's'}
        </dd>
      </div>
      <div className="wide">
        <dt>last error</dt>
        <dd>
          {s.lastFailure ? (
            <>
              {s.lastFailure.error ?? `HTTP ${s.lastFailure.statusCode}`} · <Time value={s.lastFailure.at} />
            </>
          ) : (
            <span className="muted">none</span>
          )}
        </dd>
      </div>
    </dl>
  );
}

function Deliveries({ api, base, refresh, onRetried }: { api: Api; base: string; refresh: number; onRetried: () => void }) {
  const [status, setStatus] = useState('');
  const pages = usePages();
  const after = pages.after;
  const page = useResource(
    (signal) => api.get<{ deliveries: Delivery[]; nextAfter: number | null }>(`${base}/deliveries`, { status, after, limit: 25 }, signal),
    JSON.stringify([api.key, base, status, after, refresh]),
    3_000,
  );
  return (
    <>
      <div className="subhead">
        <h3>Deliveries</h3>
        <select
          aria-label="delivery status"
          value={status}
          onChange={(e) => {
            setStatus(e.target.value);
            pages.reset();
          }}
        >
          <option value="">every status</option>
          <option value="pending">pending</option>
          <option value="succeeded">succeeded</option>
          <option value="failed">failed</option>
        </select>
      </div>
      <Loaded resource={page} isEmpty={(d) => d.deliveries.length === 0} empty={<>No delivery{status ? ` is ${status}` : ' yet'}.</>}>
        {(data) => (
          <>
            <div className="table-wrap">
              <table aria-label="deliveries">
                <thead>
                  <tr>
                    <th>seq</th>
                    <th>type</th>
                    <th>status</th>
                    <th className="num">attempts</th>
                    <th>last code</th>
                    <th>last error</th>
                    <th />
                  </tr>
                </thead>
                <tbody>
                  {data.deliveries.map((d) => (
                    <tr key={d.id} data-delivery={d.id}>
                      <td className="seq">{d.eventSeq}</td>
                      <td className="type">{d.eventType}</td>
                      <td>
                        <span className={`badge ${d.status}`}>{d.status}</span>
                      </td>
                      <td className="num">{d.attempts}</td>
                      <td>{d.lastStatusCode ?? '–'}</td>
                      <td className="ellipsis" title={d.lastError ?? undefined}>
                        {d.lastError ?? ''}
                      </td>
                      <td>
                        {d.status !== 'succeeded' && (
                          <RetryButton key={`${d.id}:${d.attempts}`} api={api} deliveryId={d.id} onRetried={onRetried} />
                        )}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
            <Pager pages={pages} nextAfter={data.nextAfter} />
          </>
        )}
      </Loaded>
    </>
  );
}

/** Retries a delivery (`POST /v1/deliveries/{id}/retry`); the outcome, or the refusal, is shown in its place. */
export function RetryButton({ api, deliveryId, onRetried }: { api: Api; deliveryId: number; onRetried?: () => void }) {
  const [outcome, setOutcome] = useState<{ ok: boolean; text: string } | null>(null);
  if (outcome) return <span className={outcome.ok ? 'muted' : 'bad'}>{outcome.text}</span>;
  return (
    <button
      type="button"
      onClick={() =>
        api.post(`/v1/deliveries/${deliveryId}/retry`).then(
          () => {
            setOutcome({ ok: true, text: 'queued' });
            onRetried?.();
          },
          (e: Error) => setOutcome({ ok: false, text: `retry refused: ${e.message}` }),
        )
      }
    >
      Retry
    </button>
  );
}

function Attempts({ api, base, refresh }: { api: Api; base: string; refresh: number }) {
  const pages = usePages();
  const after = pages.after;
  const page = useResource(
    (signal) => api.get<{ attempts: Attempt[]; nextAfter: number | null }>(`${base}/attempts`, { after, limit: 25 }, signal),
    JSON.stringify([api.key, base, after, refresh]),
    3_000,
  );
  return (
    <>
      <div className="subhead">
        <h3>Attempts</h3>
      </div>
      <Loaded resource={page} isEmpty={(d) => d.attempts.length === 0} empty={<>No attempt yet.</>}>
        {(data) => (
          <>
            <div className="table-wrap">
              <table aria-label="attempts">
                <thead>
                  <tr>
                    <th>delivery</th>
                    <th>#</th>
                    <th>started</th>
                    <th>status</th>
                    <th>code</th>
                    <th className="num">ms</th>
                    <th>response</th>
                  </tr>
                </thead>
                <tbody>
                  {data.attempts.map((a) => (
                    <tr key={a.id}>
                      <td>{a.deliveryId}</td>
                      <td>{a.attempt}</td>
                      <td>
                        <Time value={a.startedAt} />
                      </td>
                      <td>
                        <span className={`badge ${a.success ? 'succeeded' : 'failed'}`}>{a.success ? 'ok' : 'failed'}</span>
                      </td>
                      <td>{a.statusCode ?? '–'}</td>
                      <td className="num">{a.durationMs}</td>
                      <td className="ellipsis snippet" title={a.responseBody ?? a.error ?? undefined}>
                        {(a.responseBody ?? a.error ?? '').slice(0, 120)}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
            <Pager pages={pages} nextAfter={data.nextAfter} />
          </>
        )}
      </Loaded>
    </>
  );
}
