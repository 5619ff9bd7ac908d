import { describe, expect, it } from 'vitest';
import { isValidPattern, matchAny, matchPattern, patternCovers } from '../src/pattern.js';
import { patternsCover, unionPatterns } from '../src/pattern.js';

describe('matchPattern (the bus semantics)', () => {
  const cases: [string, string, boolean][] = [
    ['project.created', 'project.created', true],
    ['project.created', 'project.updated', false],
    ['project.*', 'project.created', true],
    ['project.*', 'project', false],
    ['project.*', 'project.item.created', false],
    ['*.created', 'user.created', true],
    ['*.created', 'user.deleted', false],
    ['project.>', 'project.created', true],
    ['project.>', 'project.item.created', true],
    ['project.>', 'project', false],
    ['project.>', 'projects.created', false],
    ['>', 'project.created', true],
    ['>', 'a.b.c.d', true],
    ['menu.*', 'menu.type_created', true],
    ['a.*.c', 'a.b.c', true],
    ['a.*.c', 'a.b.d', false],
  ];
  it.each(cases)('%s vs %s → %s', (pattern, type, expected) => {
    expect(matchPattern(pattern, type)).toBe(expected);
  });

  it('matchAny is true when one pattern matches', () => {
    expect(matchAny(['user.*', 'project.created'], 'project.created')).toBe(true);
    expect(matchAny(['user.*', 'project.created'], 'project.updated')).toBe(false);
    expect(matchAny([], 'project.updated')).toBe(false);
  });
});

describe('isValidPattern', () => {
  it('accepts segments, * anywhere and > last', () => {
    for (const p of ['project.created', 'project.*', '*.created', 'project.>', '>', 'menu.type_created']) {
      expect(isValidPattern(p), p).toBe(true);
    }
  });
  it('refuses > in the middle, empty segments and upper case', () => {
    for (const p of ['>.created', 'project..created', 'Project.created', '', 'project.cre*', 'a.>.b']) {
      expect(isValidPattern(p), p).toBe(false);
    }
  });
});

describe('pattern coverage (used to share one connection)', () => {
  it('knows which pattern includes which', () => {
    expect(patternCovers('>', 'project.created')).toBe(true);
    expect(patternCovers('project.>', 'project.*')).toBe(true);
    expect(patternCovers('project.*', 'project.>')).toBe(false);
    expect(patternCovers('project.*', 'project.created')).toBe(true);
    expect(patternCovers('project.created', 'project.*')).toBe(false);
    expect(patternCovers('*.created', 'project.created')).toBe(true);
    expect(patternCovers('project.>', '>')).toBe(false);
  });
  it('unions pattern sets without redundant entries', () => {
    expect(unionPatterns(['project.created'], ['project.*'])).toEqual(['project.*']);
    expect(unionPatterns(['project.*', 'user.created'], ['>'])).toEqual(['>']);
    expect(unionPatterns(['project.created', 'user.created'], ['user.created'])).toEqual(['project.created', 'user.created']);
    expect(patternsCover(['project.*'], ['project.created', 'project.updated'])).toBe(true);
    expect(patternsCover(['project.*'], ['user.created'])).toBe(false);
  });
});
