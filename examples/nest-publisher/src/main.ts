/**
 * A NestJS backend on the event bus:
 *
 *   EVENT_BUS_URL=http://127.0.0.1:3002 EVENT_BUS_API_KEY=ebk_… npm start
 *   EVENT_BUS_ENABLED=false npm start     (the legacy path; nothing reaches the bus)
 *
 * Listens on PORT (default 3000): `POST /projects`, `PATCH /projects/:id`, `GET /health`.
 */
import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module.js';

const app = await NestFactory.create(AppModule);
// SIGTERM/SIGINT close the app: consumers stop fetching and finish their running handlers.
app.enableShutdownHooks();
await app.listen(Number(process.env.PORT ?? 3000), process.env.HOST ?? '127.0.0.1');
console.log(`nest-publisher listening on ${await app.getUrl()}`);
