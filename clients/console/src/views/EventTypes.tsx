/** The catalogue (`GET /v1/event-types`) with a count of stored events per type (`GET /v1/event-types/counts`). */
import type { EventTypeInfo } from '@situs/event-bus-client';
import { Fragment, useState } from 'react';
import { useResource, type Api } from '../api';
import { Json, Loaded } from '../ui/states';

type Row = EventTypeInfo & { count: number; unregistered?: boolean };

export function EventTypes({ api }: { api: Api }) {
  const [open, setOpen] = useState<string | null>(null);
  const result = useResource(
    async (signal) => {
      const [catalogue, counts] = await Promise.all([
        api.get<{ eventTypes: EventTypeInfo[] }>('/v1/event-types', {}, signal),
        api.get<{ counts: { type: string; count: number }[] }>('/v1/event-types/counts', {}, signal),
      ]);
      const byType = new Map(counts.counts.map((c) => [c.type, c.count]));
      const rows: Row[] = catalogue.eventTypes.map((t) => ({ ...t, count: byType.get(t.type) ?? 0 }));
      // Types stored without being registered (the bus is not in strict mode) are listed too.
      for (const [type, count] of byType) if (!rows.some((r) => r.type === type)) rows.push({ type, count, unregistered: true });
      return rows.sort((a, b) => a.type.localeCompare(b.type));
    },
    api.key,
  );
  return (
    <section className="view">
      <header className="view-head">
        <h1>Event types</h1>
        <button type="button" onClick={result.reload}>
          Refresh
        </button>
      </header>
      <Loaded resource={result} isEmpty={(d) => d.length === 0} empty={<>The catalogue is empty.</>}>
        {(data) => (
          <div className="table-wrap">
            <table aria-label="event types">
              <thead>
                <tr>
                  <th>type</th>
                  <th className="num">stored events</th>
                  <th>description</th>
                  <th>schema</th>
                </tr>
              </thead>
              <tbody>
                {data.map((t) => (
                  <Fragment key={t.type}>
                    <tr>
                      <td className="type">
                        {t.type} {t.builtin && <span className="badge">built-in</span>}
                        {t.unregistered && <span className="badge warn">not registered</span>}
                      </td>
                      <td className="num">{t.count.toLocaleString()}</td>
                      <td>{t.description ?? <span className="muted">–</span>}</td>
                      <td>
                        {t.schema ? (
                          <button type="button" onClick={() => setOpen(open === t.type ? null : t.type)} aria-expanded={open === t.type}>
                            {open === t.type ? 'Hide' : 'Show'}
                          </button>
                        ) : (
                          <span className="muted">none</span>
                        )}
                      </td>
                    </tr>
                    {open === t.type && (
                      <tr className="expanded">
                        <td colSpan={4}>
                          <Json value={t.schema} />
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
    </section>
  );
}
