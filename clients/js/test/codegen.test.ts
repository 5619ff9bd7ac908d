// JSON Schema → TypeScript, and the generator run against the real bus catalogue.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main, parseArgs } from '../src/codegen/cli.js';
import { generateModule, schemaToType } from '../src/codegen/schema-to-ts.js';
import { EventType } from '../src/event-types.js';
import { ADMIN_KEY, killBus, startBus, tempDir, type Bus } from './helpers/bus.js';

describe('schemaToType', () => {
  it('converts scalars, enums, arrays and nested objects', () => {
    expect(schemaToType({ type: 'string' })).toBe('string');
    expect(schemaToType({ type: 'integer' })).toBe('number');
    expect(schemaToType({ type: ['string', 'null'] })).toBe('string | null');
    expect(schemaToType({ enum: ['a', 'b', 3] })).toBe('"a" | "b" | 3');
    expect(schemaToType({ type: 'array', items: { type: 'number' } })).toBe('number[]');
    expect(schemaToType({ type: 'array', items: { enum: ['x', 'y'] } })).toBe('("x" | "y")[]');
    expect(schemaToType({ type: 'array' })).toBe('unknown[]');
    expect(schemaToType({ not: { type: 'string' } })).toBe('unknown');
    expect(schemaToType(true)).toBe('unknown');
    expect(
      schemaToType({
        type: 'object',
        properties: { id: { type: 'string', description: 'the id' }, 'line-items': { type: 'array', items: { type: 'object', properties: { q: { type: 'integer' } }, required: ['q'], additionalProperties: false } } },
        required: ['id'],
        additionalProperties: false,
      }),
    ).toBe(
      ['{', '  /** the id */', '  id: string;', '  "line-items"?: {', '    q: number;', '  }[];', '}'].join('\n'),
    );
  });
  it('keeps open objects open', () => {
    expect(schemaToType({ type: 'object', properties: { a: { type: 'boolean' } } })).toBe(
      '{\n  a?: boolean;\n  [key: string]: unknown;\n}',
    );
    expect(schemaToType({ type: 'object' })).toBe('Record<string, unknown>');
  });
});

describe('gen-types against the bus', () => {
  let bus: Bus;
  beforeAll(async () => {
    bus = await startBus();
  });
  afterAll(async () => {
    if (bus) await killBus(bus);
  });

  it('the committed catalogue matches the bus built-ins', async () => {
    const res = await fetch(`${bus.url}/v1/event-types`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
    const { eventTypes } = (await res.json()) as { eventTypes: { type: string; builtin: boolean }[] };
    const builtins = eventTypes.filter((t) => t.builtin).map((t) => t.type).sort();
    expect(builtins).toHaveLength(17);
    expect(Object.values(EventType).sort()).toEqual(builtins);
    expect(EventType.PROJECT_CREATED).toBe('project.created');
    expect(EventType.MENU_TYPE_CREATED).toBe('menu.type_created');
    const generated = generateModule(eventTypes);
    const committed = readFileSync(new URL('../src/event-types.ts', import.meta.url), 'utf8');
    expect(committed).toBe(generated);
  });

  it('types a registered custom type from its schema (module augmentation)', async () => {
    const put = await fetch(`${bus.url}/v1/event-types/order.placed`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN_KEY}` },
      body: JSON.stringify({
        description: 'An order was placed',
        schema: {
          type: 'object',
          properties: { orderId: { type: 'string' }, total: { type: 'number' }, status: { enum: ['new', 'paid'] } },
          required: ['orderId', 'total'],
          additionalProperties: false,
        },
      }),
    });
    expect(put.status).toBe(201);
    const out = path.join(tempDir('gen-types-'), 'bus-types.ts');
    await main(['--url', bus.url, '--augment', '--out', out], { EVENT_BUS_API_KEY: ADMIN_KEY });
    const source = readFileSync(out, 'utf8');
    expect(source).toContain("declare module '@situs/event-bus-client' {");
    expect(source).toContain("'order.placed': OrderPlacedPayload;");
    expect(source).toContain('export type OrderPlacedPayload = {\n  orderId: string;\n  status?: "new" | "paid";\n  total: number;\n};');
    expect(source).not.toContain('project.created');
  });

  it('parses its arguments', () => {
    expect(parseArgs(['--url=http://127.0.0.1:1', '--out', 'x.ts'])).toEqual({ url: 'http://127.0.0.1:1', out: 'x.ts', customOnly: false, apiKey: undefined });
    expect(parseArgs(['--augment', 'my-alias', '--all'], { EVENT_BUS_URL: 'http://127.0.0.1:2' })).toMatchObject({ url: 'http://127.0.0.1:2', augment: 'my-alias', customOnly: false });
    expect(() => parseArgs(['--nope'])).toThrow(/unknown option/);
  });
});
