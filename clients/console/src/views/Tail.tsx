/**
 * Live tail: events as they arrive, through the client's shared stream connection
 * (`useEventStream`), which resumes after the last event on every reconnection. Filters are the
 * stream's own (type patterns, project, tenant, user); the newest 1,000 events are kept, and the
 * list renders only the rows in view, so 1,000 events/s do not slow the page down.
 */
import { isValidPattern, type BusEvent, type StreamFilter } from '@situs/event-bus-client';
import { useEventBusError, useEventBusStatus, useEventStream } from '@situs/event-bus-client/react';
import { useMemo, useState, type FormEvent } from 'react';
import type { Api } from '../api';
import { Empty, ErrorBox } from '../ui/states';
import { VirtualList } from '../ui/VirtualList';
import { EventDetail } from './EventDetail';

const KEEP = 1000;

export function Tail({ api }: { api: Api }) {
  // Each Apply starts a new feed (a new subscription), also with the same filter: after a
  // refusal the stream is closed, and applying again must try again.
  const [applied, setApplied] = useState<{ filter: StreamFilter; generation: number }>({ filter: {}, generation: 0 });
  return (
    <TailFeed
      key={applied.generation}
      api={api}
      filter={applied.filter}
      onApply={(filter) => setApplied((a) => ({ filter, generation: a.generation + 1 }))}
    />
  );
}

function TailFeed({ api, filter, onApply }: { api: Api; filter: StreamFilter; onApply: (filter: StreamFilter) => void }) {
  const [streamError, setStreamError] = useState<Error | null>(null);
  const events = useEventStream(filter, { limit: KEEP, onError: setStreamError });
  const status = useEventBusStatus();
  const lastError = useEventBusError();
  const [frozen, setFrozen] = useState<BusEvent[] | null>(null);
  const [selected, setSelected] = useState<BusEvent | null>(null);
  const shown = frozen ?? events;
  const newestFirst = useMemo(() => [...shown].reverse(), [shown]);
  const arrivedWhilePaused = frozen ? countAfter(events, frozen) : 0;

  return (
    <section className="view tail">
      <header className="view-head">
        <h1>Live tail</h1>
        <span className={`conn ${status}`} data-testid="stream-status">
          {status === 'open' ? 'live' : status}
        </span>
        <button type="button" onClick={() => setFrozen(frozen ? null : events)} aria-pressed={frozen !== null}>
          {frozen ? `Resume${arrivedWhilePaused ? ` (${arrivedWhilePaused} new)` : ''}` : 'Pause'}
        </button>
      </header>
      <FilterForm initial={filter} onApply={onApply} />
      {streamError && <ErrorBox error={streamError} />}
      {!streamError && lastError && status !== 'open' && (
        <div className="state warning">Reconnecting: {lastError.message}</div>
      )}
      {newestFirst.length === 0 ? (
        <Empty>Waiting for events{describe(filter)}. Events published from now on appear here.</Empty>
      ) : (
        <>
          <div className="tail-head" aria-hidden="true">
            <span>seq</span>
            <span>time</span>
            <span>type</span>
            <span className="wide-only">project / tenant / user</span>
          </div>
          <VirtualList
            label="events"
            items={newestFirst}
            rowHeight={34}
            height="calc(100vh - 260px)"
            itemKey={(e) => e.seq}
            render={(e) => (
              <button type="button" className={`tail-row${selected?.id === e.id ? ' selected' : ''}`} onClick={() => setSelected(e)}>
                <span className="seq">{e.seq}</span>
                <span className="muted">{new Date(e.timestamp).toLocaleTimeString()}</span>
                <span className="type">{e.type}</span>
                <span className="muted wide-only ellipsis">
                  {[e.projectId, e.tenantId, e.userId].map((v) => v ?? '–').join(' / ')}
                </span>
              </button>
            )}
          />
          <p className="muted small">
            {shown.length} event{shown.length === 1 ? '' : 's'} shown (the newest {KEEP} are kept)
            {frozen ? '; paused' : ''}
          </p>
        </>
      )}
      {selected && <EventDetail api={api} event={selected} onClose={() => setSelected(null)} />}
    </section>
  );
}

/** How many of `events` came after the last of `frozen`. */
function countAfter(events: BusEvent[], frozen: BusEvent[]): number {
  const last = frozen[frozen.length - 1]?.seq ?? 0;
  let n = 0;
  for (let i = events.length - 1; i >= 0 && (events[i]?.seq ?? 0) > last; i--) n++;
  return n;
}

function describe(filter: StreamFilter): string {
  const parts = [
    filter.types?.length ? `of ${filter.types.join(', ')}` : '',
    filter.projectId ? `in project ${filter.projectId}` : '',
    filter.tenantId ? `of tenant ${filter.tenantId}` : '',
    filter.userId ? `of user ${filter.userId}` : '',
  ].filter(Boolean);
  return parts.length ? ` ${parts.join(' ')}` : '';
}

/** The stream's filters; a pattern the bus would refuse is reported before it is sent. */
function FilterForm({ initial, onApply }: { initial: StreamFilter; onApply: (filter: StreamFilter) => void }) {
  const [types, setTypes] = useState((initial.types ?? []).join(', '));
  const [projectId, setProjectId] = useState(initial.projectId ?? '');
  const [tenantId, setTenantId] = useState(initial.tenantId ?? '');
  const [userId, setUserId] = useState(initial.userId ?? '');
  const [invalid, setInvalid] = useState<string | null>(null);
  const submit = (e: FormEvent) => {
    e.preventDefault();
    const patterns = types
      .split(',')
      .map((t) => t.trim())
      .filter(Boolean);
    const bad = patterns.find((p) => !isValidPattern(p));
    if (bad) {
      setInvalid(`\`${bad}\` is not a type pattern: dot-separated names, \`*\` for one segment, \`>\` for the rest (e.g. project.*, user.>)`);
      return;
    }
    setInvalid(null);
    onApply({
      ...(patterns.length ? { types: patterns } : {}),
      ...(projectId.trim() ? { projectId: projectId.trim() } : {}),
      ...(tenantId.trim() ? { tenantId: tenantId.trim() } : {}),
      ...(userId.trim() ? { userId: userId.trim() } : {}),
    });
  };
  return (
    <form className="filters" onSubmit={submit} aria-label="tail filters">
      <label>
        Types
        <input name="types" value={types} onChange={(e) => setTypes(e.target.value)} placeholder="project.*, user.>" />
      </label>
      <label>
        Project
        <input name="projectId" value={projectId} onChange={(e) => setProjectId(e.target.value)} />
      </label>
      <label>
        Tenant
        <input name="tenantId" value={tenantId} onChange={(e) => setTenantId(e.target.value)} />
      </label>
      <label>
        User
        <input name="userId" value={userId} onChange={(e) => setUserId(e.target.value)} />
      </label>
      <button type="submit">Apply</button>
      {invalid && (
        <p className="field-error" role="alert">
          {invalid}
        </p>
      )}
    </form>
  );
}
