/**
 * UUIDv7 (RFC 9562): a 48-bit Unix-millisecond timestamp, then random bits, so ids sort by
 * creation time. The client generates event ids itself, which makes a retried publish
 * idempotent: the bus stores an id once and answers a repeat with the stored event.
 *
 * Ids from one process are strictly increasing: within one millisecond the 12-bit `rand_a`
 * field is used as a counter (RFC 9562 §6.2, method 1).
 */

let lastMs = -1;
let counter = 0;

function randomBytes(n: number): Uint8Array {
  const bytes = new Uint8Array(n);
  const c = (globalThis as { crypto?: { getRandomValues?: (a: Uint8Array) => Uint8Array } }).crypto;
  if (!c?.getRandomValues) {
    throw new Error(
      'crypto.getRandomValues is not available: use a browser, Node >= 19, or Node 18 with --experimental-global-webcrypto',
    );
  }
  c.getRandomValues(bytes);
  return bytes;
}

/** A new UUIDv7 string, e.g. `0192f1c4-3b5e-7c1a-9d3e-5f0a1b2c3d4e`. */
export function uuidv7(now: number = Date.now()): string {
  const bytes = randomBytes(16);
  let ms = Math.floor(now);
  if (ms > lastMs) {
    lastMs = ms;
    // Start the counter low in its range so that many ids fit into one millisecond.
    counter = ((bytes[6]! & 0x0f) << 4) | (bytes[7]! >> 4);
  } else {
    ms = lastMs;
    counter += 1;
    if (counter > 0xfff) {
      lastMs += 1;
      ms = lastMs;
      counter = 0;
    }
  }
  let t = ms;
  for (let i = 5; i >= 0; i--) {
    bytes[i] = t % 256;
    t = Math.floor(t / 256);
  }
  bytes[6] = 0x70 | (counter >> 8);
  bytes[7] = counter & 0xff;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The millisecond timestamp encoded in a UUIDv7. */
export function uuidv7Timestamp(id: string): number {
  const hex = id.replace(/-/g, '').slice(0, 12);
  return parseInt(hex, 16);
}
