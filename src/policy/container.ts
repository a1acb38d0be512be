// The `container:` section: resource limits of the `airlock run` container. A hostile session can
// fork or allocate until the host gives out; these bound it. Unset limits stay null here and the
// launcher fills in its defaults, so a policy only says what it changes.
//
//   container: { pids: 512, memory: 4g, cpus: 2 }
//
// The value checks are exported for the `airlock run` flags, which take the same values.

import type { Reader, Value } from './reader.js';
import type { ContainerLimits } from './types.js';

const KEYS = ['pids', 'memory', 'cpus'] as const;
const MiB = 1024 ** 2;

export const PIDS_RANGE = Object.freeze({ min: 32, max: 4_194_304 });
/** Below 32 MiB not even the agent image's shell and tools start; above 1 PiB is a typo. */
export const MEMORY_RANGE = Object.freeze({ min: 32 * MiB, max: 2 ** 50 });
export const CPUS_RANGE = Object.freeze({ min: 0.01, max: 1024 });

export const CONTAINER_HINT = {
  section: 'Write container: as a map, e.g. container: { pids: 512, memory: 4g, cpus: 2 }',
  pids: 'Use a whole number of processes (threads count too), e.g. pids: 512',
  memory: 'Use a size with a unit k, m, g or t (binary: 4g is 4 GiB), e.g. memory: 4g; a bare number is bytes',
  cpus: 'Use how many CPUs the container may keep busy, e.g. cpus: 2 or cpus: 0.5',
} as const;

export type Checked<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly problem: string };

function shown(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

export function checkPids(v: unknown): Checked<number> {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < PIDS_RANGE.min || v > PIDS_RANGE.max) {
    return { ok: false, problem: `${shown(v)} is not an integer from ${PIDS_RANGE.min} to ${PIDS_RANGE.max}` };
  }
  return { ok: true, value: v };
}

// docker's own size syntax (binary multiples): 512m, 4g, 4GiB, 4gb, 1.5g; no unit or b = bytes.
const SIZE_RE = /^(\d+(?:\.\d+)?)\s*(?:([kmgt])i?b?|b)?$/i;
const UNIT: Readonly<Record<string, number>> = { k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** A memory size in bytes: a number of bytes, or a string with docker's units. */
export function checkMemory(v: unknown): Checked<number> {
  return checkSize(v, MEMORY_RANGE);
}

/** A size in bytes within `range`: a number of bytes, or a string with docker's units. */
export function checkSize(v: unknown, range: { readonly min: number; readonly max: number }): Checked<number> {
  let bytes: number;
  if (typeof v === 'number') {
    bytes = v;
  } else if (typeof v === 'string' && SIZE_RE.test(v.trim())) {
    const [, amount, unit] = SIZE_RE.exec(v.trim())!;
    bytes = Math.floor(Number(amount) * (unit ? UNIT[unit.toLowerCase()]! : 1));
  } else {
    return { ok: false, problem: `${shown(v)} is not a size` };
  }
  if (!Number.isSafeInteger(bytes)) return { ok: false, problem: `${shown(v)} is not a whole number of bytes` };
  if (bytes < range.min) return { ok: false, problem: `${shown(v)} is less than ${formatBytes(range.min)}` };
  if (bytes > range.max) return { ok: false, problem: `${shown(v)} is more than ${formatBytes(range.max)}` };
  return { ok: true, value: bytes };
}

export function checkCpus(v: unknown): Checked<number> {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < CPUS_RANGE.min || v > CPUS_RANGE.max) {
    return { ok: false, problem: `${shown(v)} is not a number of CPUs from ${CPUS_RANGE.min} to ${CPUS_RANGE.max}` };
  }
  return { ok: true, value: v };
}

/** For people: "4 GiB", "200 MiB", "1.5 GiB". */
export function formatBytes(bytes: number): string {
  const units: Array<[string, number]> = [['PiB', 1024 ** 5], ['TiB', 1024 ** 4], ['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]];
  for (const [name, size] of units) {
    if (bytes >= size) return `${Number((bytes / size).toFixed(2))} ${name}`;
  }
  return `${bytes} bytes`;
}

/** As a value for --memory or `memory:`, exact: "8g", "400m", else k or bytes. */
export function sizeFlag(bytes: number): string {
  for (const [unit, size] of [['t', 1024 ** 4], ['g', 1024 ** 3], ['m', 1024 ** 2], ['k', 1024]] as const) {
    if (bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return String(bytes);
}

const UNSET: ContainerLimits = Object.freeze({ pids: null, memoryBytes: null, cpus: null });

export function parseContainer(r: Reader, v: Value | undefined): ContainerLimits {
  if (!v || r.isNull(v)) return UNSET;
  const fields = r.entries(v, KEYS, CONTAINER_HINT.section);
  const value = <T>(key: (typeof KEYS)[number], check: (x: unknown) => Checked<T>, hint: string): T | null => {
    const field = fields.get(key);
    if (!field) return null;
    // `memory:` with nothing after it is an unfinished edit, not "no limit".
    if (r.isNull(field)) r.fail(field, field.path, 'has no value', 'Give a value, or remove the key to get the default');
    const checked = check(r.scalar(field, hint));
    if (!checked.ok) r.fail(field, field.path, checked.problem, hint);
    return checked.value;
  };
  return Object.freeze({
    pids: value('pids', checkPids, CONTAINER_HINT.pids),
    memoryBytes: value('memory', checkMemory, CONTAINER_HINT.memory),
    cpus: value('cpus', checkCpus, CONTAINER_HINT.cpus),
  });
}
