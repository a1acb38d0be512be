// The `container:` section: limits of the `airlock run` container, validated like the rest.
import { describe, expect, it } from 'vitest';
import { checkCpus, checkMemory, checkPids, formatBytes, parsePolicy, PolicyError, sizeFlag } from '../../src/policy/index.js';

const FILE = 'policies/limits.yaml';
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

function policy(container: string): string {
  return `version: 1\nname: limits\n${container}\n`;
}

function failure(text: string): PolicyError {
  try {
    parsePolicy(text, FILE);
  } catch (err) {
    if (err instanceof PolicyError) return err;
    throw err;
  }
  throw new Error('expected a PolicyError');
}

describe('container: section', () => {
  it('reads pids, memory and cpus', () => {
    const p = parsePolicy(policy('container:\n  pids: 512\n  memory: 4g\n  cpus: 2'), FILE);
    expect(p.container).toEqual({ pids: 512, memoryBytes: 4 * GiB, cpus: 2 });
    expect(Object.isFrozen(p.container)).toBe(true);
  });

  it('leaves unset limits null (airlock run fills in its defaults), and accepts a flow map', () => {
    expect(parsePolicy(policy(''), FILE).container).toEqual({ pids: null, memoryBytes: null, cpus: null });
    expect(parsePolicy(policy('container:'), FILE).container).toEqual({ pids: null, memoryBytes: null, cpus: null });
    expect(parsePolicy(policy('container: { memory: 512m, cpus: 0.5 }'), FILE).container).toEqual({ pids: null, memoryBytes: 512 * MiB, cpus: 0.5 });
  });

  it('reads memory sizes the way docker does (binary units, optional i and b), and bare numbers as bytes', () => {
    const bytes = (m: string) => parsePolicy(policy(`container: { memory: ${m} }`), FILE).container.memoryBytes;
    expect(bytes('4g')).toBe(4 * GiB);
    expect(bytes('4G')).toBe(4 * GiB);
    expect(bytes('4GiB')).toBe(4 * GiB);
    expect(bytes('4gb')).toBe(4 * GiB);
    expect(bytes('1.5g')).toBe(1.5 * GiB);
    expect(bytes('300M')).toBe(300 * MiB);
    expect(bytes('65536k')).toBe(64 * MiB);
    expect(bytes('"1t"')).toBe(1024 * GiB);
    expect(bytes(String(256 * MiB))).toBe(256 * MiB);
  });

  it.each([
    ['container: [512]', 3, 'container', 'must be a map, got a list', 'container: { pids: 512, memory: 4g, cpus: 2 }'],
    ['container:\n  memroy: 4g', 4, 'container.memroy', 'unknown key "memroy" (did you mean "memory"?)', 'Allowed keys in container: pids, memory, cpus'],
    ['container:\n  pids: 8', 4, 'container.pids', '8 is not an integer from 32 to 4194304', 'threads count too'],
    ['container:\n  pids: "512"', 4, 'container.pids', '"512" is not an integer from 32 to 4194304', 'pids: 512'],
    ['container:\n  memory: 4x', 4, 'container.memory', '"4x" is not a size', 'memory: 4g'],
    ['container:\n  memory: 1m', 4, 'container.memory', '"1m" is less than 32 MiB', 'memory: 4g'],
    ['container:\n  memory: 4096', 4, 'container.memory', '4096 is less than 32 MiB', 'a bare number is bytes'],
    ['container:\n  memory:', 4, 'container.memory', 'has no value', 'remove the key'],
    ['container:\n  cpus: 0', 4, 'container.cpus', '0 is not a number of CPUs from 0.01 to 1024', 'cpus: 0.5'],
    ['container:\n  cpus: two', 4, 'container.cpus', '"two" is not a number of CPUs from 0.01 to 1024', 'cpus: 2'],
  ])('refuses %j with file, line, field and a hint', (text, line, field, problem, hint) => {
    const err = failure(policy(text));
    expect({ file: err.file, line: err.line, field: err.field }).toEqual({ file: FILE, line, field });
    expect(err.problem).toBe(problem);
    expect(err.hint).toContain(hint);
    expect(err.message).toBe(`${FILE}:${line}: ${field}: ${problem}. ${err.hint}`);
  });
});

describe('limit values for flags and messages', () => {
  it('checks values the same way for flags', () => {
    expect(checkPids(512)).toEqual({ ok: true, value: 512 });
    expect(checkPids(10)).toMatchObject({ ok: false, problem: '10 is not an integer from 32 to 4194304' });
    expect(checkMemory('2g')).toEqual({ ok: true, value: 2 * GiB });
    expect(checkMemory('lots')).toMatchObject({ ok: false, problem: '"lots" is not a size' });
    expect(checkCpus(1.5)).toEqual({ ok: true, value: 1.5 });
    expect(checkCpus(2000)).toMatchObject({ ok: false });
  });

  it('formats sizes for people and as a flag value', () => {
    expect(formatBytes(4 * GiB)).toBe('4 GiB');
    expect(formatBytes(200 * MiB)).toBe('200 MiB');
    expect(formatBytes(1.5 * GiB)).toBe('1.5 GiB');
    expect(sizeFlag(8 * GiB)).toBe('8g');
    expect(sizeFlag(400 * MiB)).toBe('400m');
    expect(sizeFlag(3 * GiB)).toBe('3g');
    expect(sizeFlag(1.5 * GiB)).toBe('1536m');
  });
});
