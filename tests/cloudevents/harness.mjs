// The real `eventbus` binary for the CloudEvents SDK tests, started by ../bus.mjs with this
// suite's admin key.

import { killBus, startBus as start } from '../bus.mjs';

/** The bootstrap admin key of the test bus. */
export const ADMIN_KEY = 'cloudevents-test-admin-key-0123456789';

/** Starts the bus over a fresh directory; resolves to { proc, url } once it listens. */
export function startBus(env = {}) {
  return start({ adminKey: ADMIN_KEY, env });
}

/** Kills the bus and waits for it to be gone. */
export const stopBus = killBus;
