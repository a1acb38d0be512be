import { describe, it, expect } from 'vitest';
import { Readable } from 'node:stream';
import { ReplaceStream } from '../../src/credentials/replace-stream.js';

async function run(chunks: string[], find: string, replace: string, limit = Infinity): Promise<{ out: string; replaced: boolean }> {
  let replaced = false;
  const stream = new ReplaceStream([{ find: Buffer.from(find), replace: Buffer.from(replace) }], () => (replaced = true), limit);
  const out: Buffer[] = [];
  Readable.from(chunks.map((c) => Buffer.from(c))).pipe(stream);
  for await (const c of stream) out.push(c as Buffer);
  return { out: Buffer.concat(out).toString(), replaced };
}

describe('ReplaceStream', () => {
  it('replaces a needle split across every possible chunk boundary', async () => {
    const text = 'before SECRET-VALUE-123 middle SECRET-VALUE-123 after';
    for (let cut = 1; cut < text.length; cut++) {
      const { out, replaced } = await run([text.slice(0, cut), text.slice(cut)], 'SECRET-VALUE-123', 'placeholder');
      expect(out).toBe('before placeholder middle placeholder after');
      expect(replaced).toBe(true);
    }
  });

  it('handles one-byte chunks and leaves unrelated bytes untouched', async () => {
    const text = 'xxSECRETxxSECRExxSECRET';
    const { out } = await run([...text], 'SECRET', 'P');
    expect(out).toBe('xxPxxSECRExxP');
  });

  it('reports nothing when nothing matched', async () => {
    const { out, replaced } = await run(['hello ', 'world'], 'SECRET', 'P');
    expect(out).toBe('hello world');
    expect(replaced).toBe(false);
  });

  it('stops replacing after the byte limit', async () => {
    const { out } = await run(['SECRET....', '..........', 'SECRET'], 'SECRET', 'P', 20);
    expect(out).toBe('P....' + '..........' + 'SECRET');
  });

  it('passes a chunk on at once unless its tail could begin a needle (SSE must not wait)', () => {
    const stream = new ReplaceStream([{ find: Buffer.from('SECRET'), replace: Buffer.from('P') }]);
    const seen: string[] = [];
    stream.on('data', (c: Buffer) => seen.push(c.toString()));
    stream.write('data: one\n\n');
    expect(seen.join('')).toBe('data: one\n\n');
    stream.write('data: SEC');
    expect(seen.join('')).toBe('data: one\n\ndata: ');
    stream.write('RET\n\n');
    expect(seen.join('')).toBe('data: one\n\ndata: P\n\n');
  });
});
