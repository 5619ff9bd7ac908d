// The legacy RealtimeEventsService adapter: type mapping, projectId, the EVENT_BUS_ENABLED switch,
// against the real bus (the NestJS example is tested in clients/nestjs).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventBusClient, EventType, type BusEvent } from '../src/index.js';
import {
  DEFAULT_EVENT_TYPE_MAP,
  ProjectEventType,
  RealtimeEventsService,
  isEventBusEnabled,
  mapLegacyType,
} from '../src/legacy/index.js';
import { ADMIN_KEY, killBus, startBus, type Bus } from './helpers/bus.js';

describe('legacy type mapping', () => {
  it('maps every legacy name to the built-in catalogue', () => {
    expect(Object.keys(DEFAULT_EVENT_TYPE_MAP).sort()).toEqual(Object.keys(ProjectEventType).sort());
    expect(Object.values(DEFAULT_EVENT_TYPE_MAP).sort()).toEqual(Object.values(EventType).sort());
    // The names in the catalogue constant and the legacy enum line up one to one.
    for (const [legacy, dotted] of Object.entries(DEFAULT_EVENT_TYPE_MAP)) {
      expect(EventType[legacy as keyof typeof EventType]).toBe(dotted);
    }
    expect(mapLegacyType('PROJECT_CREATED')).toBe('project.created');
    expect(mapLegacyType('PROJECT_STATUS_CHANGED')).toBe('project.status_changed');
    expect(mapLegacyType('MENU_TYPE_CREATED')).toBe('menu.type_created');
  });

  it('derives unmapped names by rule, passes dotted names through, refuses the rest', () => {
    expect(mapLegacyType('ORDER_ITEM_ADDED')).toBe('order.item_added');
    expect(mapLegacyType('invoice.paid')).toBe('invoice.paid');
    expect(() => mapLegacyType('PROJECT')).toThrow(/typeMap/);
    expect(() => mapLegacyType('BAD NAME')).toThrow(/typeMap/);
  });

  it('honours overrides', () => {
    const service = new RealtimeEventsService({ enabled: false, typeMap: { PROJECT_UPDATED: 'project.renamed' } });
    expect(service.mapType('PROJECT_UPDATED')).toBe('project.renamed');
    expect(service.mapType('PROJECT_CREATED')).toBe('project.created');
  });

  it('builds the event: projectId from the payload, source and tenant from the options', () => {
    const service = new RealtimeEventsService({ enabled: false, source: 'backend', tenantId: 't1' });
    expect(service.toEvent('PROJECT_CREATED', { projectId: 'p9', name: 'X' })).toEqual({
      type: 'project.created',
      payload: { projectId: 'p9', name: 'X' },
      projectId: 'p9',
      tenantId: 't1',
      metadata: { source: 'backend' },
    });
    expect(service.toEvent('USER_CREATED', { userId: 'u1' })).not.toHaveProperty('projectId');
    expect(service.toEvent('PROJECT_DELETED', { projectId: 42 }).projectId).toBe('42');
  });

  it('reads EVENT_BUS_ENABLED', () => {
    expect(isEventBusEnabled({})).toBe(true);
    expect(isEventBusEnabled({ EVENT_BUS_ENABLED: 'true' })).toBe(true);
    for (const v of ['false', 'FALSE', '0', 'no', 'off', ' false ']) expect(isEventBusEnabled({ EVENT_BUS_ENABLED: v }), v).toBe(false);
    expect(() => new RealtimeEventsService({ env: {} })).toThrow(/needs a client/);
  });
});

describe('RealtimeEventsService against the bus', () => {
  let bus: Bus;
  let client: EventBusClient;
  const storedFor = async (projectId: string) => {
    const out: BusEvent[] = [];
    for await (const e of client.queryEvents({ projectId })) out.push(e);
    return out;
  };
  beforeAll(async () => {
    bus = await startBus();
    client = new EventBusClient({ url: bus.url, apiKey: ADMIN_KEY });
  });
  afterAll(async () => {
    if (bus) await killBus(bus);
  });

  it('forwards publish(type, payload) to the bus', async () => {
    const service = new RealtimeEventsService({ client, env: {} });
    const stored = await service.publish(ProjectEventType.PROJECT_CREATED, { projectId: 'legacy-1', name: 'Shop' });
    expect(stored).toMatchObject({ type: 'project.created', projectId: 'legacy-1', payload: { projectId: 'legacy-1', name: 'Shop' } });
    expect(stored!.metadata?.source).toBe('realtime-events-service');
    expect((await storedFor('legacy-1')).map((e) => e.id)).toEqual([stored!.id]);
  });

  it('does not forward when EVENT_BUS_ENABLED=false, and calls the legacy path instead', async () => {
    const legacy: [string, unknown][] = [];
    const service = new RealtimeEventsService({
      client,
      env: { EVENT_BUS_ENABLED: 'false' },
      legacyPublish: (type, payload) => {
        legacy.push([type, payload]);
      },
    });
    expect(service.enabled).toBe(false);
    expect(await service.publish('PROJECT_UPDATED', { projectId: 'legacy-2' })).toBeUndefined();
    expect(legacy).toEqual([['PROJECT_UPDATED', { projectId: 'legacy-2' }]]);
    expect(await storedFor('legacy-2')).toEqual([]);
    // The option wins over the environment.
    const forced = new RealtimeEventsService({ client, enabled: true, env: { EVENT_BUS_ENABLED: 'false' } });
    await forced.publish('PROJECT_UPDATED', { projectId: 'legacy-2' });
    expect(await storedFor('legacy-2')).toHaveLength(1);
  });
});
