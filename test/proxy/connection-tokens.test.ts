// The headers a Connection header names stay on their hop, whatever its spelling: the shortcut for
// the plain `keep-alive` and `close` values must not let a listed header through (a session could
// otherwise pass a header upstream that the proxy means to drop, or keep one the upstream listed).
// Checked against the list's plain reading over generated spellings, both directions.
import { describe, expect, it } from 'vitest';
import { forwardRequestHeaders, forwardResponseHeaders } from '../../src/proxy/headers.js';

/** The Connection header read plainly: every comma-separated token, trimmed, lower-cased. */
function listed(value: string): Set<string> {
  return new Set(
    value
      .split(',')
      .map((t) => t.trim().toLowerCase())
      .filter((t) => t !== ''),
  );
}

const TOKENS = ['close', 'Close', 'CLOSE', 'keep-alive', 'Keep-Alive', 'KEEP-ALIVE', 'x-a', 'X-A', 'authorization', 'Authorization', 'accept-encoding', 'cl', 'x'];
const SEPARATORS = [',', ', ', ' ,', ',\t', '\t,\t', ',,'];
const PADS = ['', ' ', '\t', ' \t '];

function spellings(): string[] {
  const out = new Set<string>();
  for (const a of TOKENS) {
    for (const pad of PADS) out.add(`${pad}${a}${pad}`);
    for (const b of TOKENS) for (const sep of SEPARATORS) out.add(`${a}${sep}${b}`);
  }
  return [...out];
}

const OTHERS = ['x-a', 'authorization', 'accept-encoding', 'cl', 'x', 'close', 'keep-alive-ish'];

describe('headers named by Connection', () => {
  const all = spellings();

  it('are dropped from requests in every spelling, and only those', () => {
    expect(all.length).toBeGreaterThan(1000);
    for (const connection of all) {
      const raw = ['Host', 'h.test', 'Connection', connection, ...OTHERS.flatMap((n) => [n.toUpperCase(), `v-${n}`])];
      const names = forwardRequestHeaders(raw, connection).filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
      const gone = listed(connection);
      // `close` and `keep-alive` as tokens are options, not header names.
      expect(names, JSON.stringify(connection)).toEqual(['host', ...OTHERS].filter((n) => !gone.has(n) || n === 'close'));
    }
  });

  it('are dropped from responses in every spelling, joined or repeated, and only those', () => {
    for (const connection of all) {
      for (const value of [connection, [connection, 'keep-alive'], ['close', connection]]) {
        const headers: Record<string, string | string[]> = { connection: value };
        for (const n of OTHERS) headers[n] = `v-${n}`;
        const names = Object.keys(forwardResponseHeaders(headers));
        const gone = listed(Array.isArray(value) ? value.join(',') : value);
        expect(names, JSON.stringify(value)).toEqual(OTHERS.filter((n) => !gone.has(n) || n === 'close'));
      }
    }
  });
});
