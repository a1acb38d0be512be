import { describe, expect, it } from 'vitest';
import { compilePathGlob } from '../../src/policy/glob.js';

describe('compilePathGlob', () => {
  const cases: Array<[glob: string, path: string, expected: boolean]> = [
    ['/v1/*', '/v1/x', true],
    ['/v1/*', '/v1/a/b/c', true], // * crosses "/"
    ['/v1/*', '/v1/', true],
    ['/v1/*', '/v1', false],
    ['/v1/*', '/v2/x', false],
    ['/exact', '/exact', true],
    ['/exact', '/exact/', false],
    ['/a?c', '/abc', true],
    ['/a?c', '/ac', false],
    ['/a?c', '/abbc', false],
    ['/*.json', '/x/y.json', true],
    ['/*.json', '/x/yxjson', false], // "." is literal, not a regex wildcard
    ['/(a)+[b]', '/(a)+[b]', true],
    ['/(a)+[b]', '/aa', false],
    ['/*/releases/*', '/o/r/releases/1', true],
    ['/**', '/anything/at/all', true],
    ['/*a*a*a*b', `/${'a'.repeat(5000)}`, false], // must not blow up
  ];
  it.each(cases)('%s vs %s -> %s', (glob, path, expected) => {
    expect(compilePathGlob(glob)(path)).toBe(expected);
  });

  it('refuses globs that do not start with "/"', () => {
    expect(() => compilePathGlob('v1/*')).toThrow(/must start with/);
  });
});
