// readBounded: a request body read whole, never past its bound; exactly one outcome.
import { describe, expect, it } from 'vitest';
import { PassThrough } from 'node:stream';
import { readBounded } from '../../src/proxy/body.js';

function outcomes(feed: (s: PassThrough) => void, max: number): Promise<string[]> {
  const seen: string[] = [];
  const s = new PassThrough();
  readBounded(s, max, {
    done: (b) => seen.push(`done:${b.toString()}`),
    tooLarge: () => seen.push('tooLarge'),
    failed: (e) => seen.push(`failed:${e.message}`),
  });
  feed(s);
  return new Promise((resolve) => setTimeout(() => resolve(seen), 20));
}

describe('readBounded', () => {
  it('gives the whole body when it ends within the bound (the bound itself included)', async () => {
    expect(await outcomes((s) => (s.write('ab'), s.end('cd')), 4)).toEqual(['done:abcd']);
  });
  it('says tooLarge once past the bound, and nothing after: not the end, not a later error', async () => {
    expect(await outcomes((s) => (s.write('abc'), s.write('de'), s.write('f'), s.end(), setImmediate(() => s.destroy(new Error('late')))), 4)).toEqual(['tooLarge']);
  });
  it('says failed when the stream fails first', async () => {
    expect(await outcomes((s) => (s.write('a'), s.destroy(new Error('reset'))), 4)).toEqual(['failed:reset']);
  });
});
