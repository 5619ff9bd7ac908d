/**
 * The old in-process path (a Socket.IO gateway in the Situs backend), kept as the fallback while
 * `EVENT_BUS_ENABLED=false`. Here it only records what it was given.
 */
export class LegacyRealtimeGateway {
  readonly sent: { type: string; payload: Record<string, unknown> }[] = [];

  publish(type: string, payload: Record<string, unknown>): void {
    this.sent.push({ type, payload });
  }
}
