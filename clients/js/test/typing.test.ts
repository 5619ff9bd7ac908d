// Compile-time checks (run by `tsc --noEmit` in `npm test`) that events are typed by the
// catalogue, including custom types added by module augmentation; plus their runtime shape.
import { describe, expect, expectTypeOf, it } from 'vitest';
import './fixtures/custom-types.js';
import type { OrderPlacedPayload } from './fixtures/custom-types.js';
import { EventBusClient, EventType, type BusEvent, type EventOf, type ProjectUpdatedPayload } from '../src/index.js';

describe('typed events', () => {
  it('types subscriptions, consumers and publishes by event type', () => {
    expectTypeOf<EventOf<'project.updated'>>().toEqualTypeOf<BusEvent<ProjectUpdatedPayload, 'project.updated'>>();
    expectTypeOf<EventOf<'order.placed'>['payload']>().toEqualTypeOf<OrderPlacedPayload>();
    expectTypeOf<EventOf<'some.unknown'>['payload']>().toBeUnknown();
    expectTypeOf(EventType.PROJECT_UPDATED).toEqualTypeOf<'project.updated'>();

    const client = new EventBusClient({ url: 'http://127.0.0.1:9' });
    // Only type-checked: nothing is subscribed because the functions are never called.
    const check = () => {
      client.subscribe('order.placed', (e) => {
        expectTypeOf(e.payload.total).toEqualTypeOf<number>();
        expectTypeOf(e.type).toEqualTypeOf<'order.placed'>();
      });
      client.subscribe({ types: ['project.created', 'order.placed'] }, (e) => {
        if (e.type === 'order.placed') expectTypeOf(e.payload.orderId).toEqualTypeOf<string>();
      });
      void client.consume<'order.placed'>('orders', async (e, message) => {
        expectTypeOf(e.payload.total).toEqualTypeOf<number>();
        expectTypeOf(message.event).toEqualTypeOf<EventOf<'order.placed'>>();
        expectTypeOf(message.deliveryCount).toEqualTypeOf<number>();
      });
      // The type is inferred from the consumer's settings too.
      void client.consume('orders', (e) => expectTypeOf(e.payload.orderId).toEqualTypeOf<string>(), {
        create: { types: ['order.placed'] },
      });
      void client.consume('anything', (e) => expectTypeOf(e.payload).toBeUnknown());
      // @ts-expect-error `concurrency` is a number
      void client.consume('orders', () => undefined, { concurrency: 'many' });
      // @ts-expect-error total must be a number
      void client.publish({ type: 'order.placed', payload: { orderId: 'o1', total: 'x' } });
      void client.publish({ type: 'order.placed', payload: { orderId: 'o1', total: 3 } });
    };
    expect(typeof check).toBe('function');
  });
});
