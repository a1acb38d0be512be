import { describe, it, expect } from 'vitest';
import { Readable } from 'node:stream';
import { HOLD_WINDOW, LINE_CAP, ReplaceStream } from '../../src/credentials/replace-stream.js';

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

  it('passes whole lines on at once and holds an unfinished line whatever it holds (no oracle)', () => {
    const stream = new ReplaceStream([{ find: Buffer.from('SECRET'), replace: Buffer.from('P') }]);
    const seen: string[] = [];
    stream.on('data', (c: Buffer) => seen.push(c.toString()));
    stream.write('data: one\n\n');
    expect(seen.join('')).toBe('data: one\n\n');
    // A needle's beginning and an unrelated tail are held alike until the line ends.
    stream.write('data: SEC');
    expect(seen.join('')).toBe('data: one\n\n');
    stream.write('RET\n\ndata: XYZ');
    expect(seen.join('')).toBe('data: one\n\ndata: P\n\n');
    stream.write('\n\n');
    expect(seen.join('')).toBe('data: one\n\ndata: P\n\ndata: XYZ\n\n');
  });

  it('releases a line longer than the cap except a fixed window, and still finds a needle across it', async () => {
    const long = 'x'.repeat(LINE_CAP + 5000);
    const stream = new ReplaceStream([{ find: Buffer.from('SECRET'), replace: Buffer.from('P') }]);
    const seen: Buffer[] = [];
    stream.on('data', (c: Buffer) => seen.push(c));
    stream.write(long.slice(0, 10_000));
    expect(Buffer.concat(seen).length).toBe(0);
    stream.write(long.slice(10_000) + 'SEC');
    // Everything but the fixed window went out.
    expect(Buffer.concat(seen).length).toBe(long.length + 3 - HOLD_WINDOW);
    stream.end('RETyy');
    await new Promise((r) => stream.once('end', r));
    expect(Buffer.concat(seen).toString()).toBe(long + 'Pyy');
  });

  it('matches replacing the whole body for any chunking (seeded random texts and cuts)', async () => {
    let seed = 7;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    const needle = 'SECRET-1';
    for (let round = 0; round < 300; round++) {
      // Texts dense in needle prefixes, so held-back tails and straddling needles are common.
      let text = '';
      while (text.length < 60) text += ['S', 'SE', 'SECRET-', needle, 'x', 'SECRET-1S'][rand(6)];
      const chunks: string[] = [];
      for (let at = 0; at < text.length; ) {
        const len = 1 + rand(12);
        chunks.push(text.slice(at, at + len));
        at += len;
      }
      const { out } = await run(chunks, needle, 'P');
      expect(out).toBe(text.split(needle).join('P'));
    }
  });
});

