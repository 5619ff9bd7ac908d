/**
 * Work to do once per new project, whichever replica does it: a consumer group. Every replica of
 * this application runs the same handler; the bus hands each `project.created` event to one of
 * them, redelivers it when the handler throws (up to `maxDeliver`), and keeps the place across
 * restarts.
 */
import { Injectable, Logger } from '@nestjs/common';
import type { EventOf } from '@situs/event-bus-client';
import { OnBusEvent } from '@situs/event-bus-nestjs';

@Injectable()
export class ProjectCreatedHandler {
  private readonly logger = new Logger('ProjectCreatedHandler');

  @OnBusEvent('project.created', { consumer: 'nest-publisher.project-created', ordered: true, concurrency: 4 })
  async onProjectCreated(event: EventOf<'project.created'>): Promise<void> {
    // … send the welcome e-mail, provision the project's resources …
    this.logger.log(`project.created handled: ${event.projectId} (${event.id})`);
  }
}
