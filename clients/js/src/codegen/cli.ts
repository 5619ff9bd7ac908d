#!/usr/bin/env node
/**
 * Regenerates event types from a running bus:
 *
 *   npm run gen-types -- --url http://127.0.0.1:3002            (this package's src/event-types.ts)
 *   event-bus-gen-types --url … --augment --out src/bus-types.ts (an application's custom types)
 *
 * Options: --url (or EVENT_BUS_URL), --api-key (or EVENT_BUS_API_KEY), --out FILE (default:
 * stdout), --augment [MODULE] (module augmentation of MODULE, default this package; implies
 * --custom-only unless --all), --custom-only, --all.
 */
import { writeFileSync } from 'node:fs';
import { EventBusClient } from '../client.js';
import { generateModule } from './schema-to-ts.js';

const PACKAGE = '@situs/event-bus-client';

export interface CliArgs {
  url?: string;
  apiKey?: string;
  out?: string;
  augment?: string;
  customOnly: boolean;
}

export function parseArgs(argv: readonly string[], env: Record<string, string | undefined> = {}): CliArgs {
  const args: CliArgs = { url: env.EVENT_BUS_URL, apiKey: env.EVENT_BUS_API_KEY, customOnly: false };
  let all = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [flag, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = () => inline ?? argv[++i];
    switch (flag) {
      case '--url':
        args.url = value();
        break;
      case '--api-key':
        args.apiKey = value();
        break;
      case '--out':
        args.out = value();
        break;
      case '--augment': {
        const next = inline ?? (argv[i + 1] && !argv[i + 1]!.startsWith('--') ? argv[++i] : undefined);
        args.augment = next ?? PACKAGE;
        break;
      }
      case '--custom-only':
        args.customOnly = true;
        break;
      case '--all':
        all = true;
        break;
      default:
        throw new Error(`unknown option ${a}`);
    }
  }
  if (args.augment && !all) args.customOnly = true;
  return args;
}

export async function main(argv: readonly string[], env: Record<string, string | undefined>): Promise<void> {
  const args = parseArgs(argv, env);
  if (!args.url) throw new Error('--url (or EVENT_BUS_URL) is required');
  const client = new EventBusClient({ url: args.url, ...(args.apiKey ? { apiKey: args.apiKey } : {}) });
  const entries = await client.listEventTypes();
  const source = generateModule(entries, {
    ...(args.augment ? { augment: args.augment } : {}),
    customOnly: args.customOnly,
  });
  if (args.out) {
    writeFileSync(args.out, source);
    process.stderr.write(`wrote ${source.match(/Payload = /g)?.length ?? 0} event types to ${args.out}\n`);
  } else {
    process.stdout.write(source);
  }
}

const invoked = process.argv[1] ?? '';
if (invoked.endsWith('codegen/cli.js') || invoked.endsWith('event-bus-gen-types')) {
  main(process.argv.slice(2), process.env).catch((error: unknown) => {
    process.stderr.write(`gen-types: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  });
}
