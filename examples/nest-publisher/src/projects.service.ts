/** A backend service that publishes through the legacy API, unchanged by the switch to the bus. */
import { Injectable } from '@nestjs/common';
import { ProjectEventType, RealtimeEventsService } from '@situs/event-bus-client/legacy';

export interface Project {
  projectId: string;
  name: string;
}

@Injectable()
export class ProjectsService {
  constructor(private readonly realtime: RealtimeEventsService) {}

  async create(project: Project) {
    // … persist the project …
    return this.realtime.publish(ProjectEventType.PROJECT_CREATED, { ...project });
  }

  async rename(projectId: string, name: string) {
    return this.realtime.publish(ProjectEventType.PROJECT_UPDATED, { projectId, name });
  }
}
