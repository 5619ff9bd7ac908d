/**
 * Consumer groups (`/v1/consumers`: lag, ack pending, dead letters with retry) and plugins
 * (`/v1/plugins`: state, suspension, counters, dead letters with retry, reload). Plugins are an
 * operator's: a key bound to a tenant is refused them, and the page says so.
 */
import { Fragment, useState } from 'react';
import { useResource, type Api } from '../api';
import { Json, Loaded, Pager, Time, usePages } from '../ui/states';

interface Consumer {
  name: string;
  types: string[];
  tenantId?: string | null;
  projectId?: string | null;
  ordered: boolean;
  cursor: number;
  pending: number;
  ackPending: number;
  redelivered: number;
  deadLettered: number;
  oldestUnackedMs: number | null;
  maxDeliver: number;
}

interface Plugin {
  name: string;
  version: string;
  kind: string;
  status: string;
  subscribe?: string[];
  runsHandler?: boolean;
  cursor?: number | null;
  counters?: Record<string, number>;
  lastError?: { message: string; at: string } | null;
}

export function Consumers({ api }: { api: Api }) {
  return (
    <section className="view">
      <header className="view-head">
        <h1>Consumers and plugins</h1>
      </header>
      <ConsumerList api={api} />
      <PluginList api={api} />
    </section>
  );
}

function ConsumerList({ api }: { api: Api }) {
  const [open, setOpen] = useState<string | null>(null);
  const list = useResource((signal) => api.get<{ consumers: Consumer[] }>('/v1/consumers', {}, signal), api.key, 5_000);
  return (
    <>
      <div className="subhead">
        <h2>Consumer groups</h2>
      </div>
      <Loaded resource={list} isEmpty={(d) => d.consumers.length === 0} empty={<>No consumer group is visible to this key.</>}>
        {(data) => (
          <div className="table-wrap">
            <table aria-label="consumer groups">
              <thead>
                <tr>
                  <th>name</th>
                  <th>types</th>
                  <th className="num">cursor</th>
                  <th className="num">lag</th>
                  <th className="num">ack pending</th>
                  <th className="num">oldest unacked</th>
                  <th className="num">dead letters</th>
                </tr>
              </thead>
              <tbody>
                {data.consumers.map((c) => (
                  <Fragment key={c.name}>
                    <tr className="clickable" onClick={() => setOpen(open === c.name ? null : c.name)} aria-expanded={open === c.name}>
                      <td className="type">{c.name}</td>
                      <td>{c.types.join(', ')}</td>
                      <td className="num">{c.cursor}</td>
                      <td className="num">{c.pending}</td>
                      <td className="num">{c.ackPending}</td>
                      <td className="num">{c.oldestUnackedMs === null ? '–' : `${(c.oldestUnackedMs / 1000).toFixed(1)} s`}</td>
                      <td className="num">
                        <span className={c.deadLettered > 0 ? 'badge failed' : ''}>{c.deadLettered}</span>
                      </td>
                    </tr>
                    {open === c.name && (
                      <tr className="expanded">
                        <td colSpan={7}>
                          <DeadLetters
                            api={api}
                            base={`/v1/consumers/${encodeURIComponent(c.name)}/dead-letters`}
                            idOf={(d) => String(d.ackId)}
                            onRetried={list.reload}
                          />
                        </td>
                      </tr>
                    )}
                  </Fragment>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Loaded>
    </>
  );
}

function PluginList({ api }: { api: Api }) {
  const [open, setOpen] = useState<string | null>(null);
  const [message, setMessage] = useState<string | null>(null);
  const list = useResource((signal) => api.get<{ plugins: Plugin[] }>('/v1/plugins', {}, signal), api.key, 5_000);
  return (
    <>
      <div className="subhead">
        <h2>Plugins</h2>
        {list.data && (
          <button
            type="button"
            onClick={() =>
              api.post<Record<string, string[]>>('/v1/plugins/reload').then(
                (r) => {
                  setMessage(
                    Object.entries(r)
                      .filter(([, names]) => Array.isArray(names) && names.length > 0)
                      .map(([what, names]) => `${what}: ${names.join(', ')}`)
                      .join('; ') || 'Reloaded: nothing changed',
                  );
                  list.reload();
                },
                (e: Error) => setMessage(`Reload failed: ${e.message}`),
              )
            }
          >
            Reload (resumes suspended plugins)
          </button>
        )}
      </div>
      {message && <p className="notice ok">{message}</p>}
      <Loaded resource={list} isEmpty={(d) => d.plugins.length === 0} empty={<>No plugin is installed.</>}>
        {(data) => (
          <div className="table-wrap">
            <table aria-label="plugins">
              <thead>
                <tr>
                  <th>name</th>
                  <th>version</th>
                  <th>state</th>
                  <th className="num">handled</th>
                  <th className="num">errors</th>
                  <th className="num">dead letters</th>
                  <th>last error</th>
                </tr>
              </thead>
              <tbody>
                {data.plugins.map((p) => (
                  <Fragment key={p.name}>
                    <tr className="clickable" onClick={() => setOpen(open === p.name ? null : p.name)} aria-expanded={open === p.name}>
                      <td className="type">
                        {p.name} <span className="muted small">{p.kind}</span>
                      </td>
                      <td>{p.version}</td>
                      <td>
                        <span className={`badge ${p.status === 'running' ? 'succeeded' : p.status === 'suspended' ? 'pending' : 'failed'}`}>{p.status}</span>
                      </td>
                      <td className="num">{p.counters?.handled ?? 0}</td>
                      <td className="num">{p.counters?.errors ?? 0}</td>
                      <td className="num">{p.counters?.deadLetters ?? 0}</td>
                      <td className="ellipsis" title={p.lastError ? `${p.lastError.message} (${p.lastError.at})` : undefined}>
                        {p.lastError?.message ?? ''}
                      </td>
                    </tr>
                    {open === p.name && (
                      <tr className="expanded">
                        <td colSpan={7}>
                          <DeadLetters api={api} base={`/v1/plugins/${encodeURIComponent(p.name)}/dead-letters`} idOf={(d) => String(d.id)} onRetried={list.reload} />
                        </td>
                      </tr>
                    )}
                  </Fragment>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Loaded>
    </>
  );
}

type DeadLetter = Record<string, unknown> & { event?: { type?: string; seq?: number; id?: string } | null };

/** One page of a dead-letter listing with a Retry per entry (`POST …/dead-letters/{id}/retry`). */
function DeadLetters({ api, base, idOf, onRetried }: { api: Api; base: string; idOf: (d: DeadLetter) => string; onRetried: () => void }) {
  const pages = usePages();
  const [done, setDone] = useState<Record<string, string>>({});
  const [shown, setShown] = useState<string | null>(null);
  const after = pages.after;
  const page = useResource(
    (signal) => api.get<{ deadLetters: DeadLetter[]; nextAfter: number | null }>(base, { after, limit: 20 }, signal),
    JSON.stringify([api.key, base, after]),
  );
  return (
    <Loaded resource={page} isEmpty={(d) => d.deadLetters.length === 0} empty="No dead letter.">
      {(data) => (
        <div className="dead-letters">
          <h3>Dead letters</h3>
          <ul className="plain">
            {data.deadLetters.map((d) => {
              const id = idOf(d);
              return (
                <li key={id} data-dead-letter={id}>
                  <span className="type">{d.event?.type ?? (d.eventType as string | undefined) ?? 'archived event'}</span>{' '}
                  <span className="muted">seq {String(d.seq ?? d.eventSeq ?? '–')}</span>{' '}
                  <span className="muted">{String(d.reason ?? d.error ?? d.lastError ?? '')}</span>{' '}
                  <Time value={(d.deadLetteredAt ?? d.createdAt) as string | undefined} />{' '}
                  <button type="button" className="link" onClick={() => setShown(shown === id ? null : id)}>
                    {shown === id ? 'hide' : 'show'}
                  </button>{' '}
                  {done[id] ?? (
                    <button
                      type="button"
                      onClick={() =>
                        api.post<{ succeeded?: boolean; error?: string | null } | undefined>(`${base}/${encodeURIComponent(id)}/retry`).then(
                          (r) => {
                            setDone((m) => ({ ...m, [id]: r && r.succeeded === false ? `retry failed: ${r.error ?? ''}` : 'retried' }));
                            onRetried();
                          },
                          (e: Error) => setDone((m) => ({ ...m, [id]: e.message })),
                        )
                      }
                    >
                      Retry
                    </button>
                  )}
                  {shown === id && <Json value={d} />}
                </li>
              );
            })}
          </ul>
          <Pager pages={pages} nextAfter={data.nextAfter} />
        </div>
      )}
    </Loaded>
  );
}
