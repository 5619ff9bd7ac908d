import { Controller, Get } from '@nestjs/common';
import { HealthCheck, HealthCheckService } from '@nestjs/terminus';
import { EventBusHealthIndicator } from '@situs/event-bus-nestjs';

@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly bus: EventBusHealthIndicator,
  ) {}

  /** 200 while the bus is ready and this app's consumers keep up; 503 with the reason otherwise. */
  @Get()
  @HealthCheck()
  check() {
    return this.health.check([() => this.bus.isHealthy('eventBus')]);
  }
}
