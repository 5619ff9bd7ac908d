/**
 * Type patterns, with the bus's semantics: `project.created` (exact), `project.*` (exactly one
 * segment in that place), `project.>` (one or more trailing segments), `>` (every type).
 * The client uses them to dispatch the events of one shared stream to its subscriptions.
 */

const LITERAL = /^[a-z][a-z0-9_]*$/;

/** Whether `pattern` is well formed: dotted segments, `*` anywhere, `>` only last. */
export function isValidPattern(pattern: string): boolean {
  const segments = pattern.split('.');
  return segments.every((s, i) => LITERAL.test(s) || s === '*' || (s === '>' && i === segments.length - 1));
}

/** Whether the event type `type` is selected by `pattern`. */
export function matchPattern(pattern: string, type: string): boolean {
  const p = pattern.split('.');
  const t = type.split('.');
  for (let i = 0; i < p.length; i++) {
    const seg = p[i];
    if (seg === '>') return t.length > i;
    if (i >= t.length) return false;
    if (seg !== '*' && seg !== t[i]) return false;
  }
  return p.length === t.length;
}

/** Whether any of `patterns` selects `type`. */
export function matchAny(patterns: readonly string[], type: string): boolean {
  return patterns.some((p) => matchPattern(p, type));
}

/** Whether every type selected by `inner` is also selected by `outer`. */
export function patternCovers(outer: string, inner: string): boolean {
  const o = outer.split('.');
  const n = inner.split('.');
  for (let i = 0; i < o.length; i++) {
    const seg = o[i];
    if (seg === '>') return n.length > i;
    if (i >= n.length) return false;
    const other = n[i];
    if (other === '>') return false;
    if (seg === '*') continue;
    if (seg !== other) return false;
  }
  return o.length === n.length;
}

/** Whether every pattern of `inner` is covered by one of `outer`. */
export function patternsCover(outer: readonly string[], inner: readonly string[]): boolean {
  return inner.every((i) => outer.some((o) => patternCovers(o, i)));
}

/** The union of two pattern sets, without patterns that another one already covers. */
export function unionPatterns(a: readonly string[], b: readonly string[]): string[] {
  const all = [...new Set([...a, ...b])];
  return all
    .filter((p) => !all.some((q) => q !== p && patternCovers(q, p)))
    .sort();
}
