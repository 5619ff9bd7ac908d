import { BadRequestException, Body, Controller, HttpCode, Param, Patch, Post } from '@nestjs/common';
import { ProjectsService } from './projects.service.js';

@Controller('projects')
export class ProjectsController {
  constructor(private readonly projects: ProjectsService) {}

  /** `POST /projects {"projectId": "p1", "name": "Shop"}` → the stored `project.created` event (null on the legacy path). */
  @Post()
  @HttpCode(201)
  async create(@Body() body: { projectId?: unknown; name?: unknown }) {
    if (typeof body?.projectId !== 'string' || typeof body.name !== 'string') {
      throw new BadRequestException('projectId and name must be strings');
    }
    return { event: (await this.projects.create({ projectId: body.projectId, name: body.name })) ?? null };
  }

  @Patch(':projectId')
  async rename(@Param('projectId') projectId: string, @Body() body: { name?: unknown }) {
    if (typeof body?.name !== 'string') throw new BadRequestException('name must be a string');
    return { event: (await this.projects.rename(projectId, body.name)) ?? null };
  }
}
