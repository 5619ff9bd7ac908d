/**
 * A small JSON Schema → TypeScript converter, enough for event payload schemas: `type` (one or a
 * list), `enum`, `const`, `properties` / `required`, `additionalProperties`, `array` / `items`,
 * `anyOf` / `oneOf` (unions) and `allOf` (intersections). Anything else becomes `unknown`, so the
 * generated types are never narrower than what the bus accepts.
 */

type Schema = Record<string, unknown>;

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

function literal(value: unknown): string {
  if (value === null || ['string', 'number', 'boolean'].includes(typeof value)) return JSON.stringify(value);
  return 'unknown';
}

function propertyKey(name: string): string {
  return IDENTIFIER.test(name) ? name : JSON.stringify(name);
}

function docComment(schema: Schema, pad: string): string {
  const text = typeof schema.description === 'string' ? schema.description : undefined;
  if (!text) return '';
  return `${pad}/** ${text.replace(/\*\//g, '*\\/').replace(/\n/g, ' ')} */\n`;
}

function union(parts: string[]): string {
  const unique = [...new Set(parts)];
  if (unique.includes('unknown')) return 'unknown';
  return unique.length === 0 ? 'never' : unique.join(' | ');
}

function wrap(type: string): string {
  return /[|&]/.test(type) ? `(${type})` : type;
}

/** The TypeScript type for `schema`; `indent` is the nesting depth of the result. */
export function schemaToType(schema: unknown, indent = 0): string {
  if (schema === true || schema === undefined) return 'unknown';
  if (schema === false) return 'never';
  if (!schema || typeof schema !== 'object' || Array.isArray(schema)) return 'unknown';
  const s = schema as Schema;

  if ('const' in s) return literal(s.const);
  if (Array.isArray(s.enum)) return union(s.enum.map(literal));
  if (Array.isArray(s.anyOf)) return union(s.anyOf.map((x) => schemaToType(x, indent)));
  if (Array.isArray(s.oneOf)) return union(s.oneOf.map((x) => schemaToType(x, indent)));
  if (Array.isArray(s.allOf)) {
    const parts = s.allOf.map((x) => schemaToType(x, indent)).filter((t) => t !== 'unknown');
    return parts.length === 0 ? 'unknown' : parts.map(wrap).join(' & ');
  }

  const types = Array.isArray(s.type) ? s.type : s.type === undefined ? undefined : [s.type];
  if (!types) {
    if (s.properties || s.additionalProperties !== undefined) return objectType(s, indent);
    if (s.items) return arrayType(s, indent);
    return 'unknown';
  }
  return union(
    types.map((t) => {
      switch (t) {
        case 'string':
          return 'string';
        case 'number':
        case 'integer':
          return 'number';
        case 'boolean':
          return 'boolean';
        case 'null':
          return 'null';
        case 'object':
          return objectType(s, indent);
        case 'array':
          return arrayType(s, indent);
        default:
          return 'unknown';
      }
    }),
  );
}

function arrayType(s: Schema, indent: number): string {
  if (Array.isArray(s.items)) {
    // Draft-7 tuple form.
    return `[${s.items.map((x) => schemaToType(x, indent)).join(', ')}]`;
  }
  const item = s.items === undefined ? 'unknown' : schemaToType(s.items, indent);
  return `${wrap(item)}[]`;
}

function objectType(s: Schema, indent: number): string {
  const properties =
    s.properties && typeof s.properties === 'object' && !Array.isArray(s.properties)
      ? (s.properties as Record<string, unknown>)
      : {};
  const required = new Set(Array.isArray(s.required) ? s.required.filter((r): r is string => typeof r === 'string') : []);
  const names = Object.keys(properties);
  const extra = s.additionalProperties;
  if (names.length === 0) {
    if (extra === false) return 'Record<string, never>';
    if (extra && typeof extra === 'object') return `Record<string, ${schemaToType(extra, indent)}>`;
    return 'Record<string, unknown>';
  }
  const pad = '  '.repeat(indent + 1);
  const lines = names.map((name) => {
    const prop = properties[name];
    const doc = prop && typeof prop === 'object' ? docComment(prop as Schema, pad) : '';
    const optional = required.has(name) ? '' : '?';
    return `${doc}${pad}${propertyKey(name)}${optional}: ${schemaToType(prop, indent + 1)};`;
  });
  // Open objects (the JSON Schema default) allow more properties: keep them, untyped.
  if (extra !== false) lines.push(`${pad}[key: string]: unknown;`);
  return `{\n${lines.join('\n')}\n${'  '.repeat(indent)}}`;
}

/** `project.status_changed` → `ProjectStatusChanged`. */
export function pascalCase(type: string): string {
  return type
    .split(/[._-]/)
    .filter(Boolean)
    .map((w) => w[0]!.toUpperCase() + w.slice(1))
    .join('');
}

/** `project.status_changed` → `PROJECT_STATUS_CHANGED`. */
export function constantCase(type: string): string {
  return type.replace(/[.-]/g, '_').toUpperCase();
}

/** An entry of `GET /v1/event-types`, as far as the generator needs it. */
export interface CatalogueEntry {
  type: string;
  description?: string | null;
  schema?: unknown;
  builtin?: boolean;
}

/** How {@link generateModule} writes its output. */
export interface GenerateOptions {
  /**
   * Write a module augmentation of this package name instead of the package's own
   * `event-types.ts`, so an application adds its custom types to `EventPayloadMap`.
   */
  augment?: string;
  /** Leave out built-in types (useful with `augment`). */
  customOnly?: boolean;
}

/**
 * The TypeScript module for a catalogue. A type without schema gets a JSON object payload
 * (`Record<string, unknown>`), which is what every Situs payload is.
 */
export function generateModule(entries: readonly CatalogueEntry[], options: GenerateOptions = {}): string {
  const selected = [...entries]
    .filter((e) => !(options.customOnly && e.builtin))
    .sort((a, b) => a.type.localeCompare(b.type));
  const out: string[] = [
    '// Generated by `npm run gen-types` from the bus catalogue (GET /v1/event-types).',
    '// Do not edit by hand: register or change a type on the bus, then regenerate.',
    '',
  ];
  for (const e of selected) {
    const name = `${pascalCase(e.type)}Payload`;
    const doc = e.description ? `/** Payload of \`${e.type}\`: ${e.description.replace(/\*\//g, '*\\/')} */\n` : '';
    const body = e.schema === null || e.schema === undefined ? 'Record<string, unknown>' : schemaToType(e.schema, 0);
    out.push(`${doc}export type ${name} = ${body};`, '');
  }
  const mapLines = selected.map((e) => `  '${e.type}': ${pascalCase(e.type)}Payload;`);
  if (options.augment) {
    out.push(
      `declare module '${options.augment}' {`,
      '  interface EventPayloadMap {',
      ...mapLines.map((l) => `  ${l}`),
      '  }',
      '}',
      '',
    );
    return out.join('\n');
  }
  out.push(
    '/** The catalogue: `EventType.PROJECT_CREATED` is `\'project.created\'`. */',
    'export const EventType = {',
    ...selected.map((e) => `  ${constantCase(e.type)}: '${e.type}',`),
    '} as const;',
    '',
    '/** Every type of the catalogue. */',
    'export type EventType = (typeof EventType)[keyof typeof EventType];',
    '',
    '/**',
    ' * Payload type per event type. An interface, so applications can add their own types with',
    " * `declare module '@situs/event-bus-client' { interface EventPayloadMap { … } }`",
    ' * (`npm run gen-types -- --augment` writes that for them).',
    ' */',
    'export interface EventPayloadMap {',
    ...mapLines,
    '}',
    '',
  );
  return out.join('\n');
}
