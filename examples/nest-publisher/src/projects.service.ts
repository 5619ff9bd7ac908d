/**
 * A backend service that publishes through the legacy API, unchanged by the switch to the bus; with
 * a database (`DATABASE_URL`), a new project and its `project.created` event are written in one
 * Prisma transaction, the event into the bus's outbox table.
 */
import { ConflictException, Inject, Injectable, Optional } from '@nestjs/common';
import { ProjectEventType, RealtimeEventsService } from '@situs/event-bus-client/legacy';
import { EventBusService } from '@situs/event-bus-nestjs';
import { PrismaService } from './prisma.service.js';

export interface Project {
  projectId: string;
  name: string;
}

@Injectable()
export class ProjectsService {
  constructor(
    private readonly realtime: RealtimeEventsService,
    private readonly bus: EventBusService,
    @Optional() @Inject(PrismaService) private readonly prisma?: PrismaService,
  ) {}

  async create(project: Project) {
    if (!this.prisma) {
      // … persist the project …
      return this.realtime.publish(ProjectEventType.PROJECT_CREATED, { ...project });
    }
    try {
      // Both or neither: the project row and its event commit together; the bus relays the event.
      return await this.prisma.$transaction(async (tx) => {
        await tx.project.create({ data: { id: project.projectId, name: project.name } });
        return this.bus.publish(
          { type: 'project.created', projectId: project.projectId, payload: { ...project }, metadata: { source: 'situs-backend' } },
          { tx },
        );
      });
    } catch (error) {
      if ((error as { code?: unknown }).code === 'P2002') throw new ConflictException(`project ${project.projectId} exists`);
      throw error;
    }
  }

  async rename(projectId: string, name: string) {
    return this.realtime.publish(ProjectEventType.PROJECT_UPDATED, { projectId, name });
  }
}
