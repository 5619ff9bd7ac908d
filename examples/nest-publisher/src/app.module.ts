/**
 * The application module: the bus module configured from the environment, the legacy gateway as
 * its fallback while `EVENT_BUS_ENABLED=false`, Terminus for `/health`, and the database (Prisma)
 * when `DATABASE_URL` is set.
 */
import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { isEventBusEnabled } from '@situs/event-bus-client/legacy';
import { EventBusModule } from '@situs/event-bus-nestjs';
import { HealthController } from './health.controller.js';
import { LegacyRealtimeGateway, LegacyRealtimeModule } from './legacy-gateway.js';
import { PrismaService } from './prisma.service.js';
import { ProjectCreatedHandler } from './project-created.handler.js';
import { ProjectsController } from './projects.controller.js';
import { ProjectsService } from './projects.service.js';

@Module({
  imports: [
    EventBusModule.forRootAsync({
      imports: [LegacyRealtimeModule],
      inject: [LegacyRealtimeGateway],
      useFactory: (legacy: LegacyRealtimeGateway) => {
        const env = process.env;
        return {
          url: env.EVENT_BUS_URL ?? 'http://127.0.0.1:3002',
          ...(env.EVENT_BUS_API_KEY ? { apiKey: env.EVENT_BUS_API_KEY } : {}),
          // With the bus switched off, nothing is consumed either.
          consumers: isEventBusEnabled(env),
          legacy: { source: 'situs-backend', legacyPublish: (type, payload) => legacy.publish(type, payload) },
        };
      },
    }),
    TerminusModule,
  ],
  controllers: [ProjectsController, HealthController],
  providers: [ProjectsService, ProjectCreatedHandler, ...(process.env.DATABASE_URL ? [PrismaService] : [])],
})
export class AppModule {}
