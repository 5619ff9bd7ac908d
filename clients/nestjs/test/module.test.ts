// The module in one process (@nestjs/testing) against the real bus: forRoot / forRootAsync,
// EventBusService, the legacy RealtimeEventsService provider, @OnBusEvent discovery with retries
// and dead letters, draining on close, and the health indicator under Terminus.
//
// Test files are compiled by esbuild, which emits no decorator metadata: their classes name what
// they inject with @Inject. The package itself (dist/, built by tsc) and the fixture applications
// (dist-test/) are compiled with metadata, as an application would be.
import 'reflect-metadata';
import { Inject, Injectable, Module, ServiceUnavailableException, type INestApplicationContext } from '@nestjs/common';
import { HealthCheckService, TerminusModule } from '@nestjs/terminus';
import { Test } from '@nestjs/testing';
import type { BusEvent, ConsumedMessage } from '@situs/event-bus-client';
import { ProjectEventType } from '@situs/event-bus-client/legacy';
import {
  BusEventConsumers,
  EventBusClient,
  EventBusHealthIndicator,
  EventBusModule,
  EventBusService,
  OnBusEvent,
  RealtimeEventsService,
  defaultConsumerName,
} from '@situs/event-bus-nestjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, createKey, killBus, restartBus, startBus, waitFor, type Bus } from '../../js/test/helpers/bus.js';

let bus: Bus;
let admin: EventBusClient;
beforeAll(async () => {
  bus = await startBus();
  admin = new EventBusClient({ url: bus.url, apiKey: ADMIN_KEY });
});
afterAll(async () => {
  if (bus) await killBus(bus);
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function app(imports: unknown[], providers: unknown[] = []): Promise<INestApplicationContext> {
  const moduleRef = await Test.createTestingModule({ imports: imports as never[], providers: providers as never[] }).compile();
  moduleRef.useLogger(['error']);
  return moduleRef.init();
}

async function stored(filter: { projectId?: string; types?: string[] }): Promise<BusEvent[]> {
  const out: BusEvent[] = [];
  for await (const e of admin.queryEvents(filter)) out.push(e);
  return out;
}

describe('EventBusModule', () => {
  it('forRoot: EventBusService publishes and subscribes, RealtimeEventsService publishes the legacy way', async () => {
    const ctx = await app([EventBusModule.forRoot({ url: bus.url, apiKey: ADMIN_KEY, legacy: { source: 'nest-test' } })]);
    const service = ctx.get(EventBusService);
    expect(ctx.get(EventBusClient)).toBe(service.client);

    const seen: BusEvent[] = [];
    const sub = service.subscribe('project.updated', (e) => seen.push(e));
    await waitFor(() => service.client.status === 'open', 'the stream to open');
    const published = await service.publish({ type: 'project.updated', projectId: 'mod-1', payload: { projectId: 'mod-1', name: 'A' } });
    await waitFor(() => seen.length === 1, 'the subscribed event');
    expect(seen[0]!.id).toBe(published.id);
    sub.unsubscribe();

    const legacy = ctx.get(RealtimeEventsService);
    await legacy.publish(ProjectEventType.PROJECT_CREATED, { projectId: 'mod-1', name: 'A' });
    const events = await stored({ projectId: 'mod-1' });
    expect(events.map((e) => e.type)).toEqual(['project.updated', 'project.created']);
    expect(events[1]!.metadata?.source).toBe('nest-test');
    await ctx.close();
    expect(service.client.status).toBe('closed');
  });

  it('forRootAsync: the options come from a factory with injected providers', async () => {
    const key = await createKey(bus, { permissions: ['publish', 'read'] });
    const CONFIG = 'CONFIG';
    @Module({ providers: [{ provide: CONFIG, useValue: { busUrl: bus.url, busKey: key } }], exports: [CONFIG] })
    class ConfigModule {}
    const ctx = await app([
      EventBusModule.forRootAsync({
        imports: [ConfigModule],
        inject: [CONFIG],
        useFactory: async (config: { busUrl: string; busKey: string }) => ({ url: config.busUrl, apiKey: config.busKey }),
      }),
    ]);
    const service = ctx.get(EventBusService);
    expect(service.client.url).toBe(bus.url);
    // The bus refuses a publish without a key: this one went out with the factory's.
    const e = await service.publish({ type: 'project.deleted', projectId: 'async-1', payload: { projectId: 'async-1' } });
    expect((await admin.getEvent(e.id))?.type).toBe('project.deleted');
    await ctx.close();
  });

  it('refuses a module without a url', async () => {
    await expect(app([EventBusModule.forRoot({ url: '' })])).rejects.toThrow(/needs a `url`/);
  });
});

describe('@OnBusEvent', () => {
  it('finds decorated methods at start-up; handlers that throw are retried, then dead-lettered', async () => {
    const handled: string[] = [];
    let failures = 0;
    @Injectable()
    class OrderHandlers {
      @OnBusEvent('order.placed', { consumer: 'orders', concurrency: 4, startAt: 'earliest' })
      async placed(event: BusEvent, message: ConsumedMessage) {
        expect(message.event.id).toBe(event.id);
        handled.push(event.id);
      }

      @OnBusEvent(['order.failing'], { consumer: 'always-fails', maxDeliver: 2, startAt: 'earliest', nackBackoff: { initialDelayMs: 20, maxDelayMs: 20 } })
      failing() {
        failures++;
        throw new Error('cannot handle this one');
      }

      notAHandler() {
        return 'left alone';
      }
    }
    const ctx = await app([EventBusModule.forRoot({ url: bus.url, apiKey: ADMIN_KEY })], [OrderHandlers]);
    expect(
      ctx
        .get(BusEventConsumers)
        .handlers.map((h) => [h.consumer, h.handler, h.types, h.loop.concurrency])
        .sort(),
    ).toEqual([
      ['always-fails', 'OrderHandlers.failing', ['order.failing'], 1],
      ['orders', 'OrderHandlers.placed', ['order.placed'], 4],
    ]);
    const ids = (await admin.publishBatch(Array.from({ length: 30 }, (_, i) => ({ type: 'order.placed', payload: { i } })))).map((e) => e.id);
    await admin.publish({ type: 'order.failing', payload: {} });

    await waitFor(() => handled.length >= 30, 'the orders to be handled');
    expect([...handled].sort()).toEqual([...ids].sort());
    await waitFor(async () => (await admin.getConsumer('always-fails'))?.deadLettered === 1, 'the dead letter');
    expect(failures).toBe(2);
    await ctx.close();
    expect(handled).toHaveLength(30);
    const orders = await admin.getConsumer('orders');
    expect([orders?.types, orders?.ackPending, orders?.pending]).toEqual([['order.placed'], 0, 0]);
  });

  it('names a consumer after its class and method by default, and refuses two methods on one name', async () => {
    expect(defaultConsumerName('PluginHandler', 'onInstalled')).toBe('pluginhandler.oninstalled');
    expect(defaultConsumerName('_Odd$Class', 'm')).toBe('odd-class.m');
    @Injectable()
    class Twice {
      @OnBusEvent('a.one', { consumer: 'same' })
      one() {}
      @OnBusEvent('a.two', { consumer: 'same' })
      two() {}
    }
    await expect(app([EventBusModule.forRoot({ url: bus.url, apiKey: ADMIN_KEY })], [Twice])).rejects.toThrow(
      /Twice.one and Twice.two both use consumer same/,
    );
    @Injectable()
    class BadName {
      @OnBusEvent('a.one', { consumer: 'Not A Name' })
      one() {}
    }
    await expect(app([EventBusModule.forRoot({ url: bus.url, apiKey: ADMIN_KEY })], [BadName])).rejects.toThrow(/must match/);
  });

  it('close() lets a running handler finish and acks it before the module is gone', async () => {
    const order: string[] = [];
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    @Injectable()
    class Slow {
      @OnBusEvent('slow.job', { consumer: 'slow-jobs', startAt: 'earliest', ackWaitMs: 60_000 })
      async run() {
        order.push('handler started');
        await released;
        order.push('handler finished');
      }
    }
    const ctx = await app([EventBusModule.forRoot({ url: bus.url, apiKey: ADMIN_KEY })], [Slow]);
    await admin.publish({ type: 'slow.job', payload: {} });
    await waitFor(() => order.length === 1, 'the handler to start');
    const closing = ctx.close().then(() => order.push('closed'));
    await sleep(300);
    expect(order).toEqual(['handler started']);
    release();
    await closing;
    expect(order).toEqual(['handler started', 'handler finished', 'closed']);
    const info = await admin.getConsumer('slow-jobs');
    expect([info?.ackPending, info?.pending, info?.redelivered]).toEqual([0, 0, 0]);
  });

  it('with consumers: false finds the handlers but runs none', async () => {
    @Injectable()
    class Quiet {
      @OnBusEvent('quiet.thing', { consumer: 'quiet' })
      run() {}
    }
    const ctx = await app([EventBusModule.forRoot({ url: bus.url, apiKey: ADMIN_KEY, consumers: false })], [Quiet]);
    expect(ctx.get(BusEventConsumers).handlers.map((h) => h.consumer)).toEqual(['quiet']);
    expect(ctx.get(EventBusService).running).toHaveLength(0);
    expect(await admin.getConsumer('quiet')).toBeNull();
    await ctx.close();
  });
});

describe('EventBusHealthIndicator', () => {
  it('is up with a ready bus, down over the lag limit, down while the bus is stopped, up again after', async () => {
    const put = await fetch(`${bus.url}/v1/consumers/lagging`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ types: ['lag.event'], startAt: 'earliest' }),
    });
    expect(put.status).toBe(201);
    @Injectable()
    class Checks {
      constructor(
        @Inject(HealthCheckService) readonly health: HealthCheckService,
        @Inject(EventBusHealthIndicator) readonly bus: EventBusHealthIndicator,
      ) {}
    }
    const ctx = await app([EventBusModule.forRoot({ url: bus.url, apiKey: ADMIN_KEY, health: { consumers: ['lagging'], maxLag: 3, timeoutMs: 1000 } }), TerminusModule], [Checks]);
    const { health, bus: indicator } = ctx.get(Checks);
    const check = () => health.check([() => indicator.isHealthy('eventBus')]);

    const up = await check();
    expect(up.status).toBe('ok');
    expect(up.info?.eventBus).toMatchObject({ status: 'up', consumers: { lagging: { status: 'up', pending: 0 } } });

    await admin.publishBatch(Array.from({ length: 5 }, () => ({ type: 'lag.event', payload: {} })));
    await waitFor(async () => (await admin.getConsumer('lagging'))?.pending === 5, 'the consumer to lag');
    const lagging = await check().catch((e: unknown) => e);
    expect(lagging).toBeInstanceOf(ServiceUnavailableException);
    expect((lagging as ServiceUnavailableException).getResponse()).toMatchObject({
      status: 'error',
      error: { eventBus: { status: 'down', consumers: { lagging: { status: 'down', pending: 5 } } } },
    });
    // A higher limit passed to the call wins over the module's.
    expect((await indicator.isHealthy('eventBus', { maxLag: 10 })).eventBus.status).toBe('up');

    await killBus(bus);
    const stopped = await indicator.isHealthy('bus');
    expect(stopped.bus).toMatchObject({ status: 'down', url: bus.url });
    expect(String(stopped.bus.message)).toMatch(/cannot reach the event bus/);
    await expect(check()).rejects.toBeInstanceOf(ServiceUnavailableException);

    bus = await restartBus(bus);
    await waitFor(async () => (await indicator.isHealthy('bus', { maxLag: 10 })).bus.status === 'up', 'the indicator to recover');
    await ctx.close();
  });
});
