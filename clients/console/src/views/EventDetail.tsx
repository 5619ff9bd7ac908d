/**
 * One event: its JSON, its metadata and trace id, and the webhook deliveries made of it
 * (one `deliveries?eventId=` query per endpoint the key can see).
 */
import type { BusEvent } from '@situs/event-bus-client';
import { traceId, useResource, type Api } from '../api';
import { Json, Loaded, Time } from '../ui/states';
import { RetryButton, type Delivery, type Endpoint } from './Webhooks';

export function EventDetail({ api, event, onClose }: { api: Api; event: BusEvent; onClose: () => void }) {
  const trace = traceId(event.metadata?.traceparent);
  return (
    <aside className="drawer" aria-label="event detail">
      <header>
        <h2>{event.type}</h2>
        <button type="button" className="close" onClick={onClose} aria-label="close">
          ×
        </button>
      </header>
      <dl className="facts">
        <dt>id</dt>
        <dd>
          <code>{event.id}</code>
        </dd>
        <dt>seq</dt>
        <dd>{event.seq}</dd>
        <dt>time</dt>
        <dd>
          <Time value={event.timestamp} />
        </dd>
        <dt>project</dt>
        <dd>{event.projectId ?? <span className="muted">–</span>}</dd>
        <dt>tenant</dt>
        <dd>{event.tenantId ?? <span className="muted">–</span>}</dd>
        <dt>user</dt>
        <dd>{event.userId ?? <span className="muted">–</span>}</dd>
        <dt>trace id</dt>
        <dd>{trace ? <code>{trace}</code> : <span className="muted">none</span>}</dd>
      </dl>
      <h3>Payload</h3>
      <Json value={event.payload} />
      <h3>Metadata</h3>
      <Json value={event.metadata ?? {}} />
      <h3>Webhook deliveries</h3>
      <EventDeliveries api={api} eventId={event.id} />
    </aside>
  );
}

/** How many endpoints' logs the detail asks (one request each). */
const MAX_ENDPOINTS = 50;

function EventDeliveries({ api, eventId }: { api: Api; eventId: string }) {
  const result = useResource(
    async (signal) => {
      const { webhooks } = await api.get<{ webhooks: Endpoint[] }>('/v1/webhooks', {}, signal);
      const pages = await Promise.all(
        webhooks.slice(0, MAX_ENDPOINTS).map((w) =>
          api
            .get<{ deliveries: Delivery[] }>(`/v1/webhooks/${encodeURIComponent(w.id)}/deliveries`, { eventId }, signal)
            .then((p) => p.deliveries.map((d) => ({ ...d, url: w.url }))),
        ),
      );
      return { rows: pages.flat(), unchecked: Math.max(0, webhooks.length - MAX_ENDPOINTS) };
    },
    `${api.key}:${eventId}`,
  );
  return (
    <Loaded
      resource={result}
      isEmpty={(d) => d.rows.length === 0 && d.unchecked === 0}
      empty="No webhook endpoint received this event."
    >
      {({ rows, unchecked }) => (
        <>
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th>endpoint</th>
                <th>status</th>
                <th>attempts</th>
                <th>last code</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {rows.map((d) => (
                <tr key={d.id}>
                  <td className="ellipsis" title={d.url}>
                    {d.url}
                  </td>
                  <td>
                    <span className={`badge ${d.status}`}>{d.status}</span>
                  </td>
                  <td>{d.attempts}</td>
                  <td>{d.lastStatusCode ?? '–'}</td>
                  <td>
                    {d.status !== 'succeeded' && <RetryButton api={api} deliveryId={d.id} />}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
          {unchecked > 0 && (
            <p className="muted small">
              The logs of the first {MAX_ENDPOINTS} endpoints were read; {unchecked} more are not. See each endpoint under Webhooks.
            </p>
          )}
        </>
      )}
    </Loaded>
  );
}
