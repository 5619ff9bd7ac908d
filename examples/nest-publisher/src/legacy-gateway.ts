/**
 * The old in-process path (a Socket.IO gateway in the Situs backend), kept as the fallback while
 * `EVENT_BUS_ENABLED=false`. Here it logs what it was given.
 */
import { Injectable, Logger, Module } from '@nestjs/common';

@Injectable()
export class LegacyRealtimeGateway {
  private readonly logger = new Logger('LegacyRealtimeGateway');

  publish(type: string, payload: Record<string, unknown>): void {
    this.logger.log(`legacy path: ${type} ${JSON.stringify(payload)}`);
  }
}

@Module({ providers: [LegacyRealtimeGateway], exports: [LegacyRealtimeGateway] })
export class LegacyRealtimeModule {}
