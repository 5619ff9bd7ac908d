// The transactional outbox against the real PostgreSQL: the statement `outboxInsert` builds, then
// node-postgres and Prisma 7 transactions that commit (the row is there, column by column) or roll
// back (no row), and, when the binary relays outboxes, the committed event in the bus's log.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EventBusClient,
  EventBusError,
  outboxInsert,
  publishInTransaction,
  uuidv7,
  type EventInput,
} from '../src/index.js';
import { ADMIN_KEY, killBus, startBus, waitFor, type Bus } from './helpers/bus.js';
import { createDatabase, databaseUrl, dropDatabase, hasOutboxRelay, initOutbox, runSql } from './helpers/outbox.js';
import { createSchema, dropSchema, pgUrl } from './helpers/pg.js';
import { PRISMA_CLIENT } from './prisma-setup.js';

const bus = new EventBusClient({ url: 'http://127.0.0.1:1' });

interface OutboxRow {
  seq: string;
  id: string;
  type: string;
  payload: unknown;
  project_id: string | null;
  tenant_id: string | null;
  user_id: string | null;
  metadata: Record<string, string>;
  occurred_at: Date;
}

async function rows(db: pg.Pool, schema: string): Promise<OutboxRow[]> {
  const result = await db.query<OutboxRow>(`SELECT * FROM "${schema}".outbox ORDER BY seq`);
  return result.rows;
}

describe('outboxInsert', () => {
  it('builds one multi-row INSERT with $n placeholders, JSON values and UUIDv7 ids where absent', () => {
    const id = '0192F1C4-3B5E-7C1A-9D3E-5F0A1B2C3D4E';
    const statement = outboxInsert(
      [
        { id, type: 'project.created', projectId: 'p1', tenantId: 't1', userId: 'u1', payload: { name: 'Shop' }, metadata: { source: 'test' } },
        { type: 'user.created', payload: undefined },
      ],
      { schema: 'app_events' },
    );
    expect(statement.text).toBe(
      'INSERT INTO "app_events".outbox (id, type, payload, project_id, tenant_id, user_id, metadata) VALUES ' +
        '($1, $2, $3::jsonb, $4, $5, $6, $7::jsonb), ($8, $9, $10::jsonb, $11, $12, $13, $14::jsonb)',
    );
    expect(statement.ids[0]).toBe(id.toLowerCase());
    expect(statement.ids[1]).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(statement.values).toEqual([
      id.toLowerCase(), 'project.created', '{"name":"Shop"}', 'p1', 't1', 'u1', '{"source":"test"}',
      statement.ids[1], 'user.created', 'null', null, null, null, '{}',
    ]);
    expect(outboxInsert({ type: 'a.b', payload: 1 }).text).toMatch(/^INSERT INTO "eventbus"\.outbox /);
  });

  it('refuses a bad schema name, type, id, scope, metadata, payload or a timestamp with an EventBusError naming the field', () => {
    const bad = (events: EventInput | EventInput[], schema?: string) => () => outboxInsert(events, schema === undefined ? {} : { schema });
    const ok: EventInput = { type: 'project.created', payload: {} };
    expect(bad(ok, 'Events')).toThrow(/invalid outbox schema "Events"/);
    expect(bad(ok, 'x"; DROP TABLE y; --')).toThrow(EventBusError);
    expect(bad({ ...ok, type: 'Project.Created' })).toThrow(/invalid outbox event \(type\): "Project.Created" is not a valid event type/);
    expect(bad({ ...ok, type: 'project' })).toThrow(/\(type\)/);
    expect(bad([ok, { ...ok, id: 'order-42' }])).toThrow(/invalid outbox event \(1\/id\): "order-42" is not a UUID/);
    expect(bad({ ...ok, projectId: '' })).toThrow(/\(projectId\): must not be empty/);
    expect(bad({ ...ok, userId: 'a\nb' })).toThrow(/\(userId\): must not contain control characters/);
    expect(bad({ ...ok, metadata: { attempt: 2 } })).toThrow(/\(metadata\.attempt\): must be a string/);
    expect(bad({ ...ok, payload: { n: 1n } })).toThrow(/\(payload\): cannot be serialised as JSON/);
    expect(bad({ ...ok, timestamp: new Date() })).toThrow(/\(timestamp\): the outbox stamps the event/);
    expect(bad([])).toThrow(/at least one event/);
    try {
      outboxInsert({ ...ok, id: 'nope' });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(EventBusError);
    }
  });

  it('outbox() refuses what is neither a node-postgres nor a Prisma executor', () => {
    expect(() => bus.outbox({} as never)).toThrow(/node-postgres client or pool/);
    expect(() => bus.outbox({ query: async () => undefined }, { schema: '1x' })).toThrow(/invalid outbox schema/);
  });
});

// The test database, a schema of this file's own.
const schema = createSchema('outbox');

describe.skipIf(!schema)('node-postgres', () => {
  const s = schema!;
  let db: pg.Pool;
  beforeAll(() => {
    initOutbox(pgUrl(), s);
    runSql(pgUrl(), `CREATE TABLE "${s}".project (id text PRIMARY KEY, name text NOT NULL)`);
    db = new pg.Pool({ connectionString: pgUrl(), max: 4 });
  });
  afterAll(async () => {
    await db?.end();
    dropSchema(s);
  });

  it('a committed transaction leaves the row with its columns; seq and occurred_at come from the table', async () => {
    const client = await db.connect();
    const before = new Date();
    let ids: string[];
    try {
      await client.query('BEGIN');
      await client.query(`INSERT INTO "${s}".project VALUES ('pg-1', 'Shop')`);
      ids = await publishInTransaction(
        client,
        { type: 'project.created', projectId: 'pg-1', tenantId: 't1', userId: 'u1', payload: { projectId: 'pg-1', name: 'Shop' }, metadata: { source: 'shop-api' } },
        { schema: s },
      );
      // Not visible outside the transaction before it commits.
      expect(await rows(db, s)).toEqual([]);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    expect(ids).toHaveLength(1);
    const [row] = await rows(db, s);
    expect(row).toMatchObject({
      id: ids[0],
      type: 'project.created',
      payload: { projectId: 'pg-1', name: 'Shop' },
      project_id: 'pg-1',
      tenant_id: 't1',
      user_id: 'u1',
      metadata: { source: 'shop-api' },
    });
    expect(Number(row!.seq)).toBeGreaterThan(0);
    expect(row!.occurred_at.getTime()).toBeGreaterThanOrEqual(before.getTime() - 1000);
    await db.query(`DELETE FROM "${s}".outbox`);
  });

  it('a rolled-back transaction leaves no row (nor the change)', async () => {
    const client = await db.connect();
    try {
      await client.query('BEGIN');
      await client.query(`INSERT INTO "${s}".project VALUES ('pg-2', 'Gone')`);
      const written = await bus.outbox(client, { schema: s }).publishBatch([
        { type: 'project.created', projectId: 'pg-2', payload: { name: 'Gone' } },
        { type: 'project.updated', projectId: 'pg-2', payload: { name: 'Gone 2' } },
      ]);
      expect(written.map((e) => e.type)).toEqual(['project.created', 'project.updated']);
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    expect(await rows(db, s)).toEqual([]);
    expect((await db.query(`SELECT * FROM "${s}".project WHERE id = 'pg-2'`)).rowCount).toBe(0);
  });

  it('through a pool: each publish is a statement of its own; a batch is all or none', async () => {
    const outbox = bus.outbox(db, { schema: s });
    const one = await outbox.publish({ type: 'audit.noted', userId: 'u9', payload: null });
    expect(one).toMatchObject({ type: 'audit.noted', userId: 'u9', payload: null });
    expect((await rows(db, s)).map((r) => r.id)).toEqual([one.id]);
    // A repeated id breaks the unique constraint: the whole statement fails, no row of it stays.
    await expect(
      outbox.publishBatch([
        { id: uuidv7(), type: 'user.updated', payload: {} },
        { id: one.id, type: 'user.updated', payload: {} },
      ]),
    ).rejects.toThrow(/duplicate key/);
    expect((await rows(db, s)).map((r) => r.id)).toEqual([one.id]);
    expect(await outbox.publishBatch([])).toEqual([]);
    await db.query(`DELETE FROM "${s}".outbox`);
  });
});

/** What the tests use of the generated Prisma client (`test/fixtures/prisma/schema.prisma`). */
interface ProjectRecord {
  id: string;
  name: string;
}
interface PrismaTx {
  project: { create(args: { data: ProjectRecord }): Promise<ProjectRecord>; count(args?: { where: { id: string } }): Promise<number> };
  $executeRawUnsafe(query: string, ...values: unknown[]): Promise<number>;
}
interface TestPrisma extends PrismaTx {
  outbox: { findMany(args?: { orderBy: { seq: 'asc' } }): Promise<Record<string, unknown>[]>; deleteMany(): Promise<unknown> };
  $transaction<R>(fn: (tx: PrismaTx) => Promise<R>): Promise<R>;
  $disconnect(): Promise<void>;
}

// Prisma's schema names its schemas: this test's application has a database of its own, with the
// outbox in the default schema `eventbus` and its `project` table in `public`.
const database = createDatabase('outbox_prisma');

describe.skipIf(!database)('Prisma 7 interactive transaction', () => {
  const url = databaseUrl(database!);
  let prisma: TestPrisma;
  beforeAll(async () => {
    initOutbox(url);
    runSql(url, 'CREATE TABLE public.project (id text PRIMARY KEY, name text NOT NULL)');
    const { PrismaClient } = (await import(PRISMA_CLIENT)) as { PrismaClient: new (options: unknown) => TestPrisma };
    const { PrismaPg } = await import('@prisma/adapter-pg');
    prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: url }) });
  });
  afterAll(async () => {
    await prisma?.$disconnect();
    dropDatabase(database!);
  });

  it('commit: the project and its event together', async () => {
    const event = await prisma.$transaction(async (tx) => {
      const project = await tx.project.create({ data: { id: 'pr-1', name: 'Shop' } });
      return bus.outbox(tx).publish({
        type: 'project.created',
        projectId: project.id,
        payload: { projectId: project.id, name: project.name },
        metadata: { source: 'prisma-test' },
      });
    });
    expect(await prisma.project.count({ where: { id: 'pr-1' } })).toBe(1);
    const outbox = await prisma.outbox.findMany({ orderBy: { seq: 'asc' } });
    expect(outbox).toHaveLength(1);
    expect(outbox[0]).toMatchObject({
      id: event.id,
      type: 'project.created',
      payload: { projectId: 'pr-1', name: 'Shop' },
      projectId: 'pr-1',
      tenantId: null,
      userId: null,
      metadata: { source: 'prisma-test' },
    });
    expect(outbox[0]!.occurredAt).toBeInstanceOf(Date);
    await prisma.outbox.deleteMany();
  });

  it('rollback (a thrown error): neither the project nor its event', async () => {
    await expect(
      prisma.$transaction(async (tx) => {
        await tx.project.create({ data: { id: 'pr-2', name: 'Gone' } });
        await bus.outbox(tx).publish({ type: 'project.created', projectId: 'pr-2', payload: { name: 'Gone' } });
        throw new Error('payment declined');
      }),
    ).rejects.toThrow('payment declined');
    expect(await prisma.project.count({ where: { id: 'pr-2' } })).toBe(0);
    expect(await prisma.outbox.findMany()).toEqual([]);
  });

  it('a Prisma client outside a transaction writes in a statement of its own', async () => {
    const [a, b] = await bus.outbox(prisma).publishBatch([
      { type: 'project.updated', projectId: 'pr-1', payload: { name: 'Shop 2' } },
      { type: 'project.updated', projectId: 'pr-1', payload: { name: 'Shop 3' } },
    ]);
    expect((await prisma.outbox.findMany({ orderBy: { seq: 'asc' } })).map((r) => r.id)).toEqual([a!.id, b!.id]);
    await prisma.outbox.deleteMany();
  });
});

// End to end through the bus's relay (`OUTBOX_SOURCES`), when the binary has it.
const relay = schema !== null && hasOutboxRelay();
if (schema && !relay) console.warn('SKIPPED js outbox relay: the eventbus binary has no OUTBOX_SOURCES setting');

describe.skipIf(!relay)('relayed by the bus', () => {
  const s = `${schema}_relay`;
  let db: pg.Pool;
  let b: Bus;
  let client: EventBusClient;
  beforeAll(async () => {
    runSql(pgUrl(), `DROP SCHEMA IF EXISTS ${s} CASCADE`);
    initOutbox(pgUrl(), s);
    db = new pg.Pool({ connectionString: pgUrl(), max: 2 });
    b = await startBus({ env: { OUTBOX_SOURCES: `name=app,url=${pgUrl()},schema=${s}` } });
    client = new EventBusClient({ url: b.url, apiKey: ADMIN_KEY });
  });
  afterAll(async () => {
    if (b) await killBus(b);
    await db?.end();
    runSql(pgUrl(), `DROP SCHEMA IF EXISTS ${s} CASCADE`);
  });

  it('a committed event appears in the log with its id, scopes, metadata and time; a rolled-back one never does', async () => {
    const tx = await db.connect();
    let rolledBack: string[];
    try {
      await tx.query('BEGIN');
      rolledBack = await publishInTransaction(tx, { type: 'project.created', projectId: 'e2e-0', payload: { n: 0 } }, { schema: s });
      await tx.query('ROLLBACK');
    } finally {
      tx.release();
    }
    const committed = await db.connect();
    let ids: string[];
    let occurredAt: Date;
    try {
      await committed.query('BEGIN');
      ids = await publishInTransaction(
        committed,
        [
          { type: 'project.created', projectId: 'e2e-1', userId: 'u1', payload: { n: 1 }, metadata: { source: 'outbox-e2e' } },
          { type: 'project.updated', projectId: 'e2e-1', payload: { n: 2 } },
        ],
        { schema: s },
      );
      occurredAt = (await committed.query<{ occurred_at: Date }>(`SELECT occurred_at FROM "${s}".outbox WHERE id = $1`, [ids[0]])).rows[0]!.occurred_at;
      await committed.query('COMMIT');
    } finally {
      committed.release();
    }
    const first = await waitFor(() => client.getEvent(ids[0]!), 'the relayed event');
    expect(first).toMatchObject({ id: ids[0], type: 'project.created', projectId: 'e2e-1', userId: 'u1', payload: { n: 1 }, metadata: { source: 'outbox-e2e' } });
    const second = await waitFor(() => client.getEvent(ids[1]!), 'the second relayed event');
    // The row's occurred_at is the event's timestamp (to the millisecond a JS Date holds).
    expect(Math.abs(new Date(first!.timestamp).getTime() - occurredAt!.getTime())).toBeLessThanOrEqual(1);
    expect(second!.seq).toBeGreaterThan(first!.seq);
    // The relay deletes what it relayed; the rolled-back event was never there.
    await waitFor(async () => (await rows(db, s)).length === 0, 'the relayed rows to be deleted');
    expect(await client.getEvent(rolledBack[0]!)).toBeNull();
  });
});
