// The module's outbox against the real PostgreSQL (node-postgres): EventBusService.publish(event,
// { tx }) inside a transaction that commits (the row) or rolls back (none), and the legacy
// RealtimeEventsService writing into the outbox through the module's `outbox.executor`. The bus
// URL points nowhere: nothing of this may go over HTTP.
import 'reflect-metadata';
import type { INestApplicationContext } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { ProjectEventType } from '@situs/event-bus-client/legacy';
import { EventBusModule, EventBusService, RealtimeEventsService, type EventBusModuleOptions } from '@situs/event-bus-nestjs';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { initOutbox } from '../../js/test/helpers/outbox.js';
import { createSchema, dropSchema, pgUrl } from '../../js/test/helpers/pg.js';

// Nothing listens there: a publish that went over HTTP would fail.
const NOWHERE = 'http://127.0.0.1:1';

interface OutboxRow {
  id: string;
  type: string;
  payload: unknown;
  project_id: string | null;
  tenant_id: string | null;
  metadata: Record<string, string>;
}

const schema = createSchema('nest_outbox');

describe.skipIf(!schema)('EventBusModule and the outbox', () => {
  const s = schema!;
  let db: pg.Pool;
  const contexts: INestApplicationContext[] = [];
  beforeAll(async () => {
    initOutbox(pgUrl(), s);
    db = new pg.Pool({ connectionString: pgUrl(), max: 4 });
    await db.query(`CREATE TABLE "${s}".project (id text PRIMARY KEY, name text NOT NULL)`);
  });
  afterEach(async () => {
    await Promise.all(contexts.splice(0).map((c) => c.close()));
    await db.query(`DELETE FROM "${s}".outbox`);
  });
  afterAll(async () => {
    await db?.end();
    dropSchema(s);
  });

  async function app(options: Omit<EventBusModuleOptions, 'url'>): Promise<INestApplicationContext> {
    const moduleRef = await Test.createTestingModule({
      imports: [EventBusModule.forRoot({ url: NOWHERE, client: { maxRetries: 0 }, ...options })],
    }).compile();
    moduleRef.useLogger(['error']);
    const ctx = await moduleRef.init();
    contexts.push(ctx);
    return ctx;
  }

  async function rows(): Promise<OutboxRow[]> {
    return (await db.query<OutboxRow>(`SELECT * FROM "${s}".outbox ORDER BY seq`)).rows;
  }

  /** Runs `work` in a transaction on one client; commits unless `rollback`. */
  async function inTransaction<R>(work: (tx: pg.PoolClient) => Promise<R>, rollback = false): Promise<R> {
    const tx = await db.connect();
    try {
      await tx.query('BEGIN');
      const result = await work(tx);
      await tx.query(rollback ? 'ROLLBACK' : 'COMMIT');
      return result;
    } finally {
      tx.release();
    }
  }

  it('publish(event, { tx }): the row commits with the transaction, not over HTTP', async () => {
    const bus = (await app({ outbox: { schema: s } })).get(EventBusService);
    const event = await inTransaction(async (tx) => {
      await tx.query(`INSERT INTO "${s}".project VALUES ('n-1', 'Shop')`);
      const written = await bus.publish({ type: 'project.created', projectId: 'n-1', payload: { projectId: 'n-1', name: 'Shop' } }, { tx });
      expect(await rows()).toEqual([]); // not visible before the commit
      return written;
    });
    expect(await rows()).toEqual([
      expect.objectContaining({ id: event.id, type: 'project.created', project_id: 'n-1', payload: { projectId: 'n-1', name: 'Shop' }, metadata: {} }),
    ]);
    // Without `tx` the same service publishes over HTTP: here, to a bus that is not there.
    await expect(bus.publish({ type: 'project.created', payload: {} })).rejects.toThrow(/cannot reach the event bus/);
  });

  it('publish(event, { tx }): a rolled-back transaction leaves no row, nor does publishBatch', async () => {
    const bus = (await app({ outbox: { schema: s } })).get(EventBusService);
    await inTransaction(async (tx) => {
      await tx.query(`INSERT INTO "${s}".project VALUES ('n-2', 'Gone')`);
      await bus.publish({ type: 'project.created', projectId: 'n-2', payload: { name: 'Gone' } }, { tx });
      const batch = await bus.publishBatch(
        [
          { type: 'project.updated', projectId: 'n-2', payload: { name: 'Gone 2' } },
          { type: 'project.deleted', projectId: 'n-2', payload: {} },
        ],
        { tx },
      );
      expect(batch.map((e) => e.type)).toEqual(['project.updated', 'project.deleted']);
      expect((await tx.query(`SELECT count(*)::int AS n FROM "${s}".outbox`)).rows[0].n).toBe(3);
    }, true);
    expect(await rows()).toEqual([]);
    expect((await db.query(`SELECT 1 FROM "${s}".project WHERE id = 'n-2'`)).rowCount).toBe(0);
    await expect(bus.publish({ type: 'project.created', payload: {} }, { tx: undefined as never })).rejects.toThrow(/`tx` is missing/);
  });

  it('the legacy RealtimeEventsService writes into the outbox through outbox.executor', async () => {
    const ctx = await app({ outbox: { schema: s, executor: db }, legacy: { source: 'nest-outbox', tenantId: 't1' } });
    const written = await ctx.get(RealtimeEventsService).publish(ProjectEventType.PROJECT_CREATED, { projectId: 'n-3', name: 'Legacy' });
    const stored = await rows();
    expect(stored).toHaveLength(1);
    expect(stored[0]).toMatchObject({
      id: written!.id,
      type: 'project.created',
      payload: { projectId: 'n-3', name: 'Legacy' },
      project_id: 'n-3',
      tenant_id: 't1',
      metadata: { source: 'nest-outbox' },
    });
  });
});
