/**
 * Search: `GET /v1/events` with its filters (type patterns, project, tenant, user, time range),
 * an event id (`GET /v1/events/{id}`), the archive on request, and keyset paging (`after` /
 * `nextAfter`, a stack of cursors for going back).
 */
import type { BusEvent, EventPage } from '@situs/event-bus-client';
import { useState, type FormEvent } from 'react';
import { useResource, type Api, type Query } from '../api';
import { Empty, Loaded, Pager, Time, usePages } from '../ui/states';
import { EventDetail } from './EventDetail';

const PAGE = 50;

interface Criteria {
  id: string;
  query: Query;
}

export function Search({ api }: { api: Api }) {
  const [criteria, setCriteria] = useState<Criteria | null>(null);
  const pages = usePages();
  const [selected, setSelected] = useState<BusEvent | null>(null);
  const after = pages.after;
  const result = useResource<EventPage | null>(
    async (signal) => {
      if (!criteria) return null;
      if (criteria.id) {
        try {
          const event = await api.get<BusEvent>(`/v1/events/${encodeURIComponent(criteria.id)}`, {}, signal);
          return { events: [event], nextAfter: null };
        } catch (error) {
          if ((error as { status?: number }).status === 404) return { events: [], nextAfter: null };
          throw error;
        }
      }
      return api.get<EventPage>('/v1/events', { ...criteria.query, after, limit: PAGE }, signal);
    },
    JSON.stringify([api.key, criteria, after]),
  );
  return (
    <section className="view">
      <header className="view-head">
        <h1>Search</h1>
      </header>
      <SearchForm
        onSearch={(c) => {
          setCriteria(c);
          pages.reset();
        }}
      />
      {!criteria ? (
        <Empty>Search stored events by type pattern, ids and time; with every field empty, the whole log pages by, oldest first.</Empty>
      ) : (
        <Loaded
          resource={result}
          loading="Searching"
          isEmpty={(d) => !d || d.events.length === 0}
          empty={
            criteria.id ? (
              <>No hot event has this id (an id is looked up among the events not yet archived; search the archive by type and time).</>
            ) : (
              <>No stored event matches{criteria.query.includeArchived ? '' : ' (the archive was not searched)'}.</>
            )
          }
        >
          {(data) => (
            <>
              <div className="table-wrap">
                <table className="events" aria-label="search results">
                  <thead>
                    <tr>
                      <th>seq</th>
                      <th>time</th>
                      <th>type</th>
                      <th>project</th>
                      <th>tenant</th>
                      <th>user</th>
                    </tr>
                  </thead>
                  <tbody>
                    {data!.events.map((e) => (
                      <tr key={e.seq} className="clickable" onClick={() => setSelected(e)} tabIndex={0} onKeyDown={(k) => k.key === 'Enter' && setSelected(e)}>
                        <td className="seq">{e.seq}</td>
                        <td>
                          <Time value={e.timestamp} />
                        </td>
                        <td className="type">{e.type}</td>
                        <td>{e.projectId ?? '–'}</td>
                        <td>{e.tenantId ?? '–'}</td>
                        <td>{e.userId ?? '–'}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
              <Pager pages={pages} nextAfter={data!.nextAfter} />
            </>
          )}
        </Loaded>
      )}
      {selected && <EventDetail api={api} event={selected} onClose={() => setSelected(null)} />}
    </section>
  );
}

function SearchForm({ onSearch }: { onSearch: (criteria: Criteria) => void }) {
  const [fields, setFields] = useState({ type: '', projectId: '', tenantId: '', userId: '', from: '', to: '', id: '' });
  const [archived, setArchived] = useState(false);
  const set = (name: keyof typeof fields) => (e: { target: { value: string } }) => setFields((f) => ({ ...f, [name]: e.target.value }));
  const submit = (e: FormEvent) => {
    e.preventDefault();
    const iso = (local: string) => (local ? new Date(local).toISOString() : undefined);
    onSearch({
      id: fields.id.trim(),
      query: {
        type: fields.type.replace(/\s+/g, ''),
        projectId: fields.projectId.trim(),
        tenantId: fields.tenantId.trim(),
        userId: fields.userId.trim(),
        from: iso(fields.from),
        to: iso(fields.to),
        includeArchived: archived || undefined,
      },
    });
  };
  return (
    <form className="filters" onSubmit={submit} aria-label="search filters">
      <label>
        Types
        <input name="type" value={fields.type} onChange={set('type')} placeholder="project.*, user.>" />
      </label>
      <label>
        Project
        <input name="projectId" value={fields.projectId} onChange={set('projectId')} />
      </label>
      <label>
        Tenant
        <input name="tenantId" value={fields.tenantId} onChange={set('tenantId')} />
      </label>
      <label>
        User
        <input name="userId" value={fields.userId} onChange={set('userId')} />
      </label>
      <label>
        From
        <input name="from" type="datetime-local" step="1" value={fields.from} onChange={set('from')} />
      </label>
      <label>
        To
        <input name="to" type="datetime-local" step="1" value={fields.to} onChange={set('to')} />
      </label>
      <label>
        Event id
        <input name="id" value={fields.id} onChange={set('id')} placeholder="exact id" />
      </label>
      <label className="check">
        <input type="checkbox" name="includeArchived" checked={archived} onChange={(e) => setArchived(e.target.checked)} /> Include the archive
      </label>
      <button type="submit">Search</button>
    </form>
  );
}
