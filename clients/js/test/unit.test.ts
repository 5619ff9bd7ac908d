// Pure pieces: UUIDv7, backoff and Retry-After, the SSE parser.
import { describe, expect, it } from 'vitest';
import { backoffDelay, parseRetryAfter } from '../src/backoff.js';
import { SseParser } from '../src/transport/sse-parser.js';
import { uuidv7, uuidv7Timestamp } from '../src/uuid.js';

describe('uuidv7', () => {
  it('has the version and variant bits and the timestamp', () => {
    const now = Date.UTC(2026, 10, 27, 5, 0, 0, 123);
    const id = uuidv7(now);
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(uuidv7Timestamp(id)).toBe(now);
  });
  it('is unique and increasing within one millisecond', () => {
    const now = Date.now() + 10_000;
    const ids = Array.from({ length: 1000 }, () => uuidv7(now));
    expect(new Set(ids).size).toBe(1000);
    expect([...ids].sort()).toEqual(ids);
  });
});

describe('backoff', () => {
  it('grows exponentially with jitter between half and the full step, capped', () => {
    const opts = { initialDelayMs: 100, maxDelayMs: 1000 };
    expect(backoffDelay(0, opts, () => 0)).toBe(50);
    expect(backoffDelay(0, opts, () => 1)).toBe(100);
    expect(backoffDelay(3, opts, () => 0)).toBe(400);
    expect(backoffDelay(3, opts, () => 1)).toBe(800);
    expect(backoffDelay(10, opts, () => 1)).toBe(1000);
    expect(backoffDelay(1000, opts, () => 0.5)).toBe(750);
  });
  it('parses Retry-After as seconds or an HTTP date', () => {
    expect(parseRetryAfter('3')).toBe(3000);
    expect(parseRetryAfter(null)).toBeUndefined();
    expect(parseRetryAfter('soon')).toBeUndefined();
    const now = Date.parse('2026-11-27T05:00:00Z');
    expect(parseRetryAfter('Fri, 27 Nov 2026 05:00:10 GMT', now)).toBe(10_000);
    expect(parseRetryAfter('Fri, 27 Nov 2026 04:00:00 GMT', now)).toBe(0);
  });
});

describe('SseParser', () => {
  it('parses messages split across chunks, ignores comments, keeps ids per message', () => {
    const p = new SseParser();
    const text = 'retry: 2000\n\n: heartbeat\n\nid: 42\nevent: project.created\ndata: {"a":\ndata: 1}\n\nevent: lagged\ndata: {"lastEventId":42}\n\n';
    const out = [];
    for (let i = 0; i < text.length; i += 7) out.push(...p.feed(text.slice(i, i + 7)));
    expect(p.retryMs).toBe(2000);
    expect(out).toEqual([
      { id: '42', event: 'project.created', data: '{"a":\n1}' },
      { id: undefined, event: 'lagged', data: '{"lastEventId":42}' },
    ]);
  });
  it('handles CRLF and CR line endings, even split between chunks', () => {
    const p = new SseParser();
    const out = [...p.feed('id: 1\r'), ...p.feed('\ndata: x\r\n\r'), ...p.feed('\ndata:y\r\r'), ...p.feed(': c\n')];
    expect(out).toEqual([
      { id: '1', event: 'message', data: 'x' },
      { id: undefined, event: 'message', data: 'y' },
    ]);
  });
});
