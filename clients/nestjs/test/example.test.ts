// examples/nest-publisher, a NestJS application (NestFactory.create) on the module, started as a
// process against the real bus: the legacy RealtimeEventsService publishes, its @OnBusEvent
// handler runs, /health answers; with EVENT_BUS_ENABLED=false only the legacy path runs; with
// DATABASE_URL a new project and its event are written in one Prisma transaction (the outbox).
import { readFileSync } from 'node:fs';
import { EventBusClient, type BusEvent } from '@situs/event-bus-client';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, killBus, startBus, waitFor, type Bus } from '../../js/test/helpers/bus.js';
import { createDatabase, databaseUrl, dropDatabase, initOutbox, runSql } from '../../js/test/helpers/outbox.js';
import { EXAMPLE, EXAMPLE_DIR, startApp, stopApp, type App } from './helpers/app.js';

let bus: Bus;
let admin: EventBusClient;
const apps: App[] = [];
beforeAll(async () => {
  bus = await startBus();
  admin = new EventBusClient({ url: bus.url, apiKey: ADMIN_KEY });
});
afterEach(async () => {
  await Promise.all(apps.splice(0).map((a) => stopApp(a, 'SIGTERM')));
});
afterAll(async () => {
  if (bus) await killBus(bus);
});

async function example(env: Record<string, string> = {}): Promise<App> {
  const app = await startApp(
    EXAMPLE,
    { EVENT_BUS_URL: bus.url, EVENT_BUS_API_KEY: ADMIN_KEY, PORT: '0', ...env },
    /nest-publisher listening on (\S+)/,
  );
  apps.push(app);
  return app;
}

async function call(app: App, method: string, path: string, body: unknown) {
  const res = await fetch(`${app.url}${path}`, { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as { event: BusEvent | null } };
}

async function stored(projectId: string): Promise<BusEvent[]> {
  const out: BusEvent[] = [];
  for await (const e of admin.queryEvents({ projectId })) out.push(e);
  return out;
}

describe('examples/nest-publisher', () => {
  it('publishes through the legacy API, handles project.created once, reports its health', async () => {
    const app = await example();
    const created = await call(app, 'POST', '/projects', { projectId: 'nest-1', name: 'Nest' });
    expect(created.status).toBe(201);
    expect(created.body.event).toMatchObject({ type: 'project.created', projectId: 'nest-1' });
    expect((await call(app, 'PATCH', '/projects/nest-1', { name: 'Nest 2' })).body.event?.type).toBe('project.updated');
    expect((await stored('nest-1')).map((e) => [e.type, e.metadata?.source])).toEqual([
      ['project.created', 'situs-backend'],
      ['project.updated', 'situs-backend'],
    ]);
    await waitFor(() => app.lines.some((l) => l.includes(`project.created handled: nest-1 (${created.body.event!.id})`)), 'the handler');

    const health = await fetch(`${app.url}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({
      status: 'ok',
      info: { eventBus: { status: 'up', consumers: { 'nest-publisher.project-created': { status: 'up', ackPending: 0 } } } },
    });
    expect((await call(app, 'POST', '/projects', { projectId: 7 })).status).toBe(400);
  });

  it('with EVENT_BUS_ENABLED=false takes the legacy path and sends nothing to the bus', async () => {
    const app = await example({ EVENT_BUS_ENABLED: 'false' });
    const created = await call(app, 'POST', '/projects', { projectId: 'nest-2', name: 'Old path' });
    expect(created).toEqual({ status: 201, body: { event: null } });
    expect(app.lines.some((l) => l.includes('legacy path: PROJECT_CREATED {"projectId":"nest-2","name":"Old path"}'))).toBe(true);
    expect(await stored('nest-2')).toEqual([]);
  });
});

// The example's database: its `project` table (prisma/init.sql) and the bus's outbox table.
const database = createDatabase('nest_example');

describe.skipIf(!database)('examples/nest-publisher with DATABASE_URL', () => {
  const url = databaseUrl(database!);
  let db: pg.Pool;
  beforeAll(() => {
    initOutbox(url);
    runSql(url, readFileSync(`${EXAMPLE_DIR}/prisma/init.sql`, 'utf8'));
    db = new pg.Pool({ connectionString: url, max: 2 });
  });
  afterAll(async () => {
    await db?.end();
    dropDatabase(database!);
  });

  it('creates the project and its project.created event in one Prisma transaction; a failed one leaves neither', async () => {
    const app = await example({ DATABASE_URL: url });
    const created = await call(app, 'POST', '/projects', { projectId: 'db-1', name: 'Shop' });
    expect(created.status).toBe(201);
    const event = created.body.event!;
    expect(event).toMatchObject({ type: 'project.created', projectId: 'db-1', payload: { projectId: 'db-1', name: 'Shop' } });
    const outbox = async () => (await db.query('SELECT id, type, project_id, payload, metadata FROM eventbus.outbox ORDER BY seq')).rows;
    expect(await outbox()).toEqual([
      { id: event.id, type: 'project.created', project_id: 'db-1', payload: { projectId: 'db-1', name: 'Shop' }, metadata: { source: 'situs-backend' } },
    ]);
    expect((await db.query('SELECT id, name FROM project')).rows).toEqual([{ id: 'db-1', name: 'Shop' }]);
    // Not sent over HTTP: the bus has it only once a relay brings it.
    expect(await stored('db-1')).toEqual([]);

    // The same project again: the insert fails, the transaction rolls back, no second event.
    expect((await call(app, 'POST', '/projects', { projectId: 'db-1', name: 'Again' })).status).toBe(409);
    expect((await outbox()).map((r) => r.id)).toEqual([event.id]);
    expect((await db.query('SELECT name FROM project')).rows).toEqual([{ name: 'Shop' }]);
  });
});
