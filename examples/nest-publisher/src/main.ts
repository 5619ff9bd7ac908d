/**
 * Runs the module without NestJS: a minimal resolver for `useClass` / `useFactory` providers,
 * then a project creation through `ProjectsService`.
 *
 *   EVENT_BUS_URL=http://127.0.0.1:3002 EVENT_BUS_API_KEY=ebk_… npm start
 *   EVENT_BUS_ENABLED=false npm start     (the legacy path; nothing reaches the bus)
 */
import { RealtimeEventsService } from '@situs/event-bus-client/legacy';
import { LegacyRealtimeGateway } from './legacy-gateway.js';
import { ProjectsService } from './projects.service.js';
import { ENV, realtimeProviders, type Env, type Provider } from './realtime.module.js';

/** Instantiates `providers` in dependency order, like Nest's injector does. */
export function resolve(providers: Provider[], values: Map<unknown, unknown>): Map<unknown, unknown> {
  const get = (token: unknown): unknown => {
    if (values.has(token)) return values.get(token);
    const p = providers.find((x) => x.provide === token);
    if (!p) throw new Error(`no provider for ${String(token)}`);
    const value =
      'useClass' in p ? new p.useClass() : (p.useFactory as (...deps: unknown[]) => unknown)(...(p.inject ?? []).map(get));
    values.set(token, value);
    return value;
  };
  for (const p of providers) get(p.provide);
  return values;
}

export async function bootstrap(env: Env) {
  const container = resolve(realtimeProviders, new Map<unknown, unknown>([[ENV, env]]));
  const realtime = container.get(RealtimeEventsService) as RealtimeEventsService;
  const legacy = container.get(LegacyRealtimeGateway) as LegacyRealtimeGateway;
  return { realtime, legacy, projects: new ProjectsService(realtime) };
}

const invoked = process.argv[1] ?? '';
if (invoked.endsWith('main.js')) {
  const { projects, legacy, realtime } = await bootstrap(process.env);
  const stored = await projects.create({ projectId: 'p_demo', name: 'Demo project' });
  if (realtime.enabled) console.log('published to the bus:', JSON.stringify(stored));
  else console.log('bus disabled; legacy path got:', JSON.stringify(legacy.sent));
}
