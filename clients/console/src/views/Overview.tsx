/**
 * Overview: the last hour of the bus (360 samples) from `GET /v1/stats` (samples the server rolls up every few
 * seconds; the page never scrapes /metrics), and `/health/ready`'s entries.
 */
import type { Readiness as ReadinessAnswer } from '@situs/event-bus-client';
import { useEventBusClient } from '@situs/event-bus-client/react';
import { useResource, type Api, type Resource } from '../api';
import { LineChart } from '../ui/Chart';
import { Loaded } from '../ui/states';

interface Sample {
  at: string;
  events: number;
  eventsPerSecond: number;
  webhookSucceeded: number;
  webhookFailed: number;
  webhookSuccessRate: number | null;
  webhookLatencyMs: { mean: number; max: number } | null;
  sseConnections: number;
  queueDepths: { storeWriter: number; subscribers: number; sse: number; webhooks: number | null };
}

interface Stats {
  intervalSeconds: number;
  samples: Sample[];
  current?: Sample;
}

/** Samples the server keeps: its ring spans 360 intervals. */
const RING = 360;

/** `seconds` as the reader says it: "hour", "6 min", "2 h". */
function span(seconds: number): string {
  if (seconds === 3600) return 'hour';
  return seconds >= 3600 ? `${+(seconds / 3600).toFixed(1)} h` : `${+(seconds / 60).toFixed(1)} min`;
}

export function Overview({ api }: { api: Api }) {
  const stats = useResource((signal) => api.get<Stats>('/v1/stats', {}, signal), api.key, 5_000);
  // The client's own readiness call: a 503 is an answer with the failing entries, not an error.
  const client = useEventBusClient();
  const health = useResource((signal) => client.readiness(signal), api.key, 5_000);
  return (
    <section className="view">
      <header className="view-head">
        <h1>Overview</h1>
        <span className="muted small">{stats.data ? `the last ${span(stats.data.intervalSeconds * RING)}, a sample every ${stats.data.intervalSeconds} s; ` : ''}refreshed every 5 s</span>
      </header>
      <Health health={health} />
      <Loaded resource={stats}>{(data) => <Charts stats={data} />}</Loaded>
    </section>
  );
}

function Charts({ stats }: { stats: Stats }) {
  const s = stats.samples;
  const times = s.map((x) => x.at);
  const total = s.reduce((n, x) => n + x.events, 0);
  const attempts = s.reduce((n, x) => n + x.webhookSucceeded + x.webhookFailed, 0);
  const ok = s.reduce((n, x) => n + x.webhookSucceeded, 0);
  return (
    <>
      <dl className="tiles" aria-label="recent figures">
        <div>
          <dt>events (last {span(stats.intervalSeconds * RING)})</dt>
          <dd data-testid="events-last-hour">{total.toLocaleString()}</dd>
        </div>
        <div>
          <dt>events/s (last sample)</dt>
          <dd>{s[s.length - 1]?.eventsPerSecond.toFixed(1) ?? '–'}</dd>
        </div>
        <div>
          <dt>webhook success</dt>
          <dd>{attempts === 0 ? '–' : `${((ok / attempts) * 100).toFixed(1)} %`}</dd>
        </div>
        <div>
          <dt>SSE connections</dt>
          <dd>{(stats.current ?? s[s.length - 1])?.sseConnections ?? '–'}</dd>
        </div>
      </dl>
      <div className="charts">
        <LineChart title="Events per second" times={times} series={[{ name: 'events/s', color: '#2563eb', values: s.map((x) => x.eventsPerSecond) }]} />
        <LineChart
          title="Webhook success rate"
          unit="%"
          max={1}
          times={times}
          series={[{ name: 'success', color: '#16a34a', values: s.map((x) => x.webhookSuccessRate) }]}
        />
        <LineChart
          title="Webhook latency"
          unit="ms"
          times={times}
          series={[
            { name: 'mean', color: '#9333ea', values: s.map((x) => x.webhookLatencyMs?.mean ?? null) },
            { name: 'max', color: '#f59e0b', values: s.map((x) => x.webhookLatencyMs?.max ?? null) },
          ]}
        />
        <LineChart title="SSE connections" times={times} series={[{ name: 'open', color: '#0891b2', values: s.map((x) => x.sseConnections) }]} />
        <LineChart
          title="Queue depths"
          times={times}
          series={[
            { name: 'store writer', color: '#2563eb', values: s.map((x) => x.queueDepths.storeWriter) },
            { name: 'subscribers', color: '#16a34a', values: s.map((x) => x.queueDepths.subscribers) },
            { name: 'SSE', color: '#0891b2', values: s.map((x) => x.queueDepths.sse) },
            { name: 'webhooks', color: '#dc2626', values: s.map((x) => x.queueDepths.webhooks) },
          ]}
        />
      </div>
    </>
  );
}

function Health({ health }: { health: Resource<ReadinessAnswer> }) {
  return (
    <Loaded resource={health} loading="Checking readiness">
      {(data) => <Readiness answer={data} />}
    </Loaded>
  );
}

function Readiness({ answer }: { answer: ReadinessAnswer }) {
  const { ok } = answer;
  const entries = Object.entries(answer.details ?? { ...answer.info, ...answer.error });
  return (
    <div className="health" aria-label="readiness">
      <span className={`badge ${ok ? 'succeeded' : 'failed'}`} data-testid="ready">
        {ok ? 'ready' : 'not ready'}
      </span>
      {entries.map(([name, entry]) => (
        <span key={name} className={`health-entry ${entry.status === 'up' || entry.status === 'ok' ? 'up' : 'down'}`} title={JSON.stringify(entry)}>
          <b>{name}</b> {String(entry.status)}
          {Object.entries(entry)
            .filter(([k]) => k !== 'status')
            .slice(0, 3)
            .map(([k, v]) => (
              <span key={k} className="muted small">
                {' '}
                {k}: {typeof v === 'object' ? JSON.stringify(v) : String(v)}
              </span>
            ))}
        </span>
      ))}
    </div>
  );
}
