/**
 * The application side of the transactional outbox: an event written into the application's own
 * PostgreSQL database, in the same transaction as the change it describes. The bus relays the
 * committed rows into its log (server setting `OUTBOX_SOURCES`), so the event exists if and only
 * if the change was committed: no event for a rolled-back change, no change without its event.
 *
 * The table is `"<schema>".outbox` (default schema `eventbus`), created by
 * `eventbus outbox init --url <database url> [--schema <schema>]`. The application inserts only
 * `id, type, payload, project_id, tenant_id, user_id, metadata`; `seq` and `occurred_at` (the
 * event's timestamp) come from their defaults, and the relay deletes the rows it has relayed.
 *
 * - {@link outboxInsert} builds the statement (text, `$n` values, ids), for any driver;
 * - {@link publishInTransaction} runs it on a node-postgres client inside the caller's `BEGIN`;
 * - {@link createOutbox} (also `EventBusClient.outbox`) publishes through a node-postgres client or
 *   pool (`query`) or a Prisma client or interactive transaction (`$executeRawUnsafe`).
 *
 * Events are checked here as the bus checks them (type, id, scopes, metadata), so a mistake fails
 * the application's transaction with an {@link EventBusError} instead of reaching the relay as a
 * row it can only dead-letter.
 */
import { EventBusError } from './errors.js';
import type { EventInput } from './types.js';
import { uuidv7 } from './uuid.js';

/** Where the outbox table is. */
export interface OutboxOptions {
  /** The schema of the `outbox` table (`[a-z_][a-z0-9_]{0,62}`, default `eventbus`). */
  schema?: string;
}

/** One INSERT of events into the outbox: run it with `text` and `values` in your transaction. */
export interface OutboxStatement {
  /** `INSERT INTO "<schema>".outbox (…) VALUES ($1, …), (…)`. */
  text: string;
  /** Seven values per event, in the order of the columns. */
  values: unknown[];
  /** The events' ids, in order: given ones lower-cased, missing ones new UUIDv7s. */
  ids: string[];
}

/** An event as written to the outbox: the input with its `id`. */
export type OutboxEvent<T extends string = string> = Omit<EventInput<T>, 'id' | 'timestamp'> & { id: string };

/** A node-postgres `Client`, `PoolClient` or `Pool` (anything with `query(text, values)`). */
export interface SqlQueryable {
  query(text: string, values?: unknown[]): Promise<unknown>;
}

/** A Prisma client or interactive transaction (anything with `$executeRawUnsafe(text, ...values)`). */
export interface PrismaRawExecutor {
  $executeRawUnsafe(query: string, ...values: unknown[]): PromiseLike<number>;
}

/** What the outbox writes through. */
export type OutboxExecutor = SqlQueryable | PrismaRawExecutor;

/** Publishes into the outbox through one executor (see {@link createOutbox}). */
export interface OutboxPublisher {
  /** Inserts one event; resolves to it with its `id`. */
  publish<T extends string>(event: EventInput<T>): Promise<OutboxEvent<T>>;
  /** Inserts events in one statement (all or none); resolves to them with their ids, in order. */
  publishBatch(events: readonly EventInput[]): Promise<OutboxEvent[]>;
}

/** The default schema of the outbox table. */
export const DEFAULT_OUTBOX_SCHEMA = 'eventbus';

const SCHEMA = /^[a-z_][a-z0-9_]{0,62}$/;
const TYPE = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// The bus's limits (`docs/api.md`): checked here so that the relay gets rows it can store.
const MAX_TYPE_BYTES = 255;
const MAX_SCOPE_CHARS = 128;
const MAX_METADATA_ENTRIES = 32;
const MAX_METADATA_KEY_BYTES = 64;
const MAX_METADATA_VALUE_BYTES = 2048;
const COLUMNS = ['id', 'type', 'payload', 'project_id', 'tenant_id', 'user_id', 'metadata'] as const;
// PostgreSQL's limit of bind parameters in one statement.
const MAX_PARAMETERS = 65_535;
// C0 and C1 control characters, as Rust's `char::is_control`.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

const encoder = new TextEncoder();
const bytes = (s: string) => encoder.encode(s).length;

/** An invalid event: the field is prefixed with the event's index in a batch (`3/type`). */
function invalid(index: number | null, field: string, message: string, cause?: unknown): EventBusError {
  const where = index === null ? field : `${index}/${field}`;
  return new EventBusError(`invalid outbox event (${where}): ${message}`, cause === undefined ? undefined : { cause });
}

/** The schema, checked; quoted by the caller. */
function checkSchema(schema: string | undefined): string {
  const name = schema ?? DEFAULT_OUTBOX_SCHEMA;
  if (typeof name !== 'string' || !SCHEMA.test(name)) {
    throw new EventBusError(`invalid outbox schema ${JSON.stringify(name)}: it must match ${SCHEMA.source}`);
  }
  return name;
}

function scope(index: number | null, field: string, value: unknown): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string') throw invalid(index, field, 'must be a string');
  if (value.length === 0) throw invalid(index, field, 'must not be empty');
  if ([...value].length > MAX_SCOPE_CHARS) throw invalid(index, field, `must be at most ${MAX_SCOPE_CHARS} characters`);
  if (CONTROL.test(value)) throw invalid(index, field, 'must not contain control characters');
  return value;
}

function metadataJson(index: number | null, metadata: unknown): string {
  if (metadata === undefined || metadata === null) return '{}';
  if (typeof metadata !== 'object' || Array.isArray(metadata)) throw invalid(index, 'metadata', 'must be an object of strings');
  const entries = Object.entries(metadata as Record<string, unknown>).filter(([, v]) => v !== undefined);
  if (entries.length > MAX_METADATA_ENTRIES) throw invalid(index, 'metadata', `must have at most ${MAX_METADATA_ENTRIES} entries`);
  for (const [key, value] of entries) {
    if (key.length === 0 || bytes(key) > MAX_METADATA_KEY_BYTES) {
      throw invalid(index, 'metadata', `keys must be 1 to ${MAX_METADATA_KEY_BYTES} bytes`);
    }
    if (typeof value !== 'string') throw invalid(index, `metadata.${key}`, 'must be a string');
    if (key.includes('\0') || value.includes('\0')) throw invalid(index, `metadata.${key}`, 'must not contain \\u0000');
    if (bytes(value) > MAX_METADATA_VALUE_BYTES) {
      throw invalid(index, `metadata.${key}`, `must be at most ${MAX_METADATA_VALUE_BYTES} bytes`);
    }
  }
  return JSON.stringify(Object.fromEntries(entries));
}

function payloadJson(index: number | null, payload: unknown): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(payload);
  } catch (cause) {
    throw invalid(index, 'payload', `cannot be serialised as JSON: ${cause instanceof Error ? cause.message : String(cause)}`, cause);
  }
  return json ?? 'null';
}

/** The seven values of one event, its id first. */
function row(event: EventInput, index: number | null): unknown[] {
  if (!event || typeof event !== 'object') throw invalid(index, 'event', 'must be an object');
  let id: string;
  if (event.id === undefined || event.id === null) {
    id = uuidv7();
  } else if (typeof event.id === 'string' && UUID.test(event.id)) {
    // PostgreSQL prints uuids in lower case: the id the bus will show.
    id = event.id.toLowerCase();
  } else {
    throw invalid(index, 'id', `${JSON.stringify(event.id)} is not a UUID (the outbox id column is a uuid; leave it out for a new UUIDv7)`);
  }
  const type: unknown = event.type;
  if (typeof type !== 'string' || !TYPE.test(type) || bytes(type) > MAX_TYPE_BYTES) {
    throw invalid(
      index,
      'type',
      `${JSON.stringify(type)} is not a valid event type: use dotted lowercase segments such as \`project.created\` (at most ${MAX_TYPE_BYTES} bytes)`,
    );
  }
  if (event.timestamp !== undefined) {
    throw invalid(index, 'timestamp', 'the outbox stamps the event when the row is inserted (`occurred_at`): leave `timestamp` out');
  }
  return [
    id,
    type,
    payloadJson(index, event.payload),
    scope(index, 'projectId', event.projectId),
    scope(index, 'tenantId', event.tenantId),
    scope(index, 'userId', event.userId),
    metadataJson(index, event.metadata),
  ];
}

/**
 * The INSERT of `events` into `"<schema>".outbox`, one multi-row statement with `$n` placeholders:
 * run it in the transaction of the change. Throws an {@link EventBusError} for an invalid schema
 * name or event, and for an empty list.
 */
export function outboxInsert(events: EventInput | readonly EventInput[], options: OutboxOptions = {}): OutboxStatement {
  const schema = checkSchema(options.schema);
  const list: readonly EventInput[] = Array.isArray(events) ? events : [events as EventInput];
  if (list.length === 0) throw new EventBusError('outboxInsert needs at least one event');
  if (list.length * COLUMNS.length > MAX_PARAMETERS) {
    throw new EventBusError(
      `${list.length} events are too many for one statement (at most ${Math.floor(MAX_PARAMETERS / COLUMNS.length)}): split the batch`,
    );
  }
  const single = !Array.isArray(events);
  const values: unknown[] = [];
  const ids: string[] = [];
  const tuples: string[] = [];
  list.forEach((event, i) => {
    const v = row(event, single ? null : i);
    const n = values.length;
    tuples.push(`($${n + 1}, $${n + 2}, $${n + 3}::jsonb, $${n + 4}, $${n + 5}, $${n + 6}, $${n + 7}::jsonb)`);
    values.push(...v);
    ids.push(v[0] as string);
  });
  const text = `INSERT INTO "${schema}".outbox (${COLUMNS.join(', ')}) VALUES ${tuples.join(', ')}`;
  return { text, values, ids };
}

/**
 * Inserts `events` into the outbox with a node-postgres client, inside the transaction the caller
 * opened (`BEGIN` … `COMMIT`): the bus relays them once that commits, never if it rolls back.
 * Resolves to their ids, in order.
 */
export async function publishInTransaction(
  client: SqlQueryable,
  events: EventInput | readonly EventInput[],
  options: OutboxOptions = {},
): Promise<string[]> {
  if (Array.isArray(events) && events.length === 0) return [];
  const statement = outboxInsert(events, options);
  await client.query(statement.text, statement.values);
  return statement.ids;
}

function isPrisma(executor: OutboxExecutor): executor is PrismaRawExecutor {
  return typeof (executor as Partial<PrismaRawExecutor>).$executeRawUnsafe === 'function';
}

/**
 * A publisher that writes into the outbox through `executor`: a node-postgres client inside the
 * caller's transaction, a Prisma interactive transaction (`prisma.$transaction(async (tx) => …)`),
 * or — for an event in a statement of its own — a node-postgres pool or a Prisma client.
 */
export function createOutbox(executor: OutboxExecutor, options: OutboxOptions = {}): OutboxPublisher {
  if (!executor || (typeof (executor as Partial<SqlQueryable>).query !== 'function' && !isPrisma(executor))) {
    throw new EventBusError('the outbox needs a node-postgres client or pool (`query`) or a Prisma client or transaction (`$executeRawUnsafe`)');
  }
  checkSchema(options.schema);
  const write = async (events: EventInput | readonly EventInput[]): Promise<OutboxEvent[]> => {
    const list: readonly EventInput[] = Array.isArray(events) ? events : [events as EventInput];
    if (list.length === 0) return [];
    const { text, values, ids } = outboxInsert(events, options);
    if (isPrisma(executor)) await executor.$executeRawUnsafe(text, ...values);
    else await executor.query(text, values);
    // `outboxInsert` refused any `timestamp`: the events are written as given, with their ids.
    return list.map((event, i) => ({ ...event, id: ids[i]! }));
  };
  return {
    async publish<T extends string>(event: EventInput<T>): Promise<OutboxEvent<T>> {
      const [written] = await write(event as EventInput);
      return written as OutboxEvent<T>;
    },
    publishBatch: (events) => write(events),
  };
}
