// The decoded body of a compressed response, without sockets: plain text is scrubbed, a gzip or
// zlib stream inside (a .tgz under Content-Encoding: gzip) is passed on unchanged once searched,
// and refused, with no part of the secret passed on, when the secret is inside it in any form
// the proxy writes, or when it cannot be searched within bounds.
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { constants, deflateSync, gunzipSync, gzipSync } from 'node:zlib';
import { DecodedBodyScrub, INNER_FREE, MAX_HELD } from '../../src/credentials/compressed-body.js';
import { secretForms } from '../../src/credentials/secret-forms.js';
import { secretLeaks } from '../helpers/secret-leaks.js';

const SECRET = 'npm_Re4lRegistryToken/0123456789abcdefXYZ';
const PLACEHOLDER = 'npm_airlock-npm-000000000000000000000000';
const FORMS = secretForms(SECRET, PLACEHOLDER, 'npm', true);

interface Outcome {
  readonly out: Buffer;
  readonly error: Error | null;
  /** Bytes passed on before the last chunk was written. */
  readonly early: number;
  readonly scrubbed: boolean;
}

async function run(chunks: readonly Buffer[]): Promise<Outcome> {
  let scrubbed = false;
  const t = new DecodedBodyScrub('registry.example', FORMS, () => (scrubbed = true));
  const out: Buffer[] = [];
  let error: Error | null = null;
  t.on('data', (c: Buffer) => out.push(c));
  const done = new Promise<void>((resolve) => {
    t.on('end', resolve);
    t.on('error', (err) => {
      error = err;
      resolve();
    });
  });
  let early = 0;
  for (let i = 0; i < chunks.length && !error; i++) {
    if (i === chunks.length - 1) {
      await new Promise((r) => setImmediate(r));
      early = out.reduce((n, c) => n + c.length, 0);
    }
    const wrote = new Promise<void>((resolve) => {
      if (!t.write(chunks[i]!)) t.once('drain', resolve);
      else setImmediate(resolve);
    });
    await Promise.race([wrote, done]);
  }
  if (!error) t.end();
  await done;
  return { out: Buffer.concat(out), error, early, scrubbed };
}

function pieces(data: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < data.length; i += size) out.push(data.subarray(i, i + size));
  return out;
}

/** What a session could decode from a possibly cut-off gzip stream. */
function decodePrefix(data: Buffer): string {
  try {
    return gunzipSync(data, { finishFlush: constants.Z_SYNC_FLUSH }).toString('latin1');
  } catch {
    return '';
  }
}

/** Text shaped like a package tarball's files: lines of code, with `extra` somewhere. */
function fileText(lines: number, extra = '', at = lines / 2): Buffer {
  const out: string[] = [];
  for (let i = 0; i < lines; i++) {
    if (i === Math.floor(at)) out.push(extra);
    out.push(`module.exports.f${i} = function f${i}(a, b) { return a * ${i} + b; }; // ${createHash('sha1').update(String(i)).digest('hex').slice(0, 12)}`);
  }
  return Buffer.from(out.join('\n') + '\n');
}

describe('a decoded response body', () => {
  it('plain text is scrubbed as before: the secret becomes the placeholder', async () => {
    const r = await run([Buffer.from(`{"token":"${SECRET.slice(0, 9)}`), Buffer.from(`${SECRET.slice(9)}"}\n`)]);
    expect(r.error).toBeNull();
    expect(r.out.toString()).toBe(`{"token":"${PLACEHOLDER}"}\n`);
    expect(r.scrubbed).toBe(true);
  });

  it('a gzip stream inside (a .tgz) passes on byte for byte, streaming, when it holds no secret', async () => {
    const tgz = gzipSync(fileText(40_000));
    expect(tgz.length).toBeGreaterThan(400_000);
    const r = await run(pieces(tgz, 16 * 1024));
    expect(r.error).toBeNull();
    expect(r.out.equals(tgz)).toBe(true);
    // Not held whole: most of it left before the last chunk came.
    expect(r.early).toBeGreaterThan(tgz.length / 2);
    expect(r.scrubbed).toBe(false);
  });

  it('a zlib stream inside passes on unchanged too', async () => {
    const z = deflateSync(fileText(2000));
    const r = await run(pieces(z, 4096));
    expect(r.error).toBeNull();
    expect(r.out.equals(z)).toBe(true);
  });

  it('a body shorter than the sniffed head is passed on (and scrubbed) whole', async () => {
    for (const body of ['', 'a', 'ok\n']) {
      const r = await run(body ? [Buffer.from(body)] : []);
      expect(r.error).toBeNull();
      expect(r.out.toString()).toBe(body);
    }
  });

  describe('refused, with no part of the secret passed on', () => {
    const forms = {
      raw: SECRET,
      json: JSON.stringify(SECRET).slice(1, -1).replace(/\//g, '\\/'),
      percent: encodeURIComponent(SECRET),
      base64: Buffer.from(`x-access-token:${SECRET}`).toString('base64'),
    };
    for (const [name, form] of Object.entries(forms)) {
      it(`the secret (${name}) inside gzip, split over one-byte chunks`, async () => {
        const tgz = gzipSync(fileText(300, `// echoed: ${form}`, 150));
        const r = await run(pieces(tgz, 1));
        expect(r.error?.message).toMatch(/carries a secret inside compressed content/);
        expect(r.error?.message).not.toContain(SECRET);
        const seen = decodePrefix(r.out);
        expect(seen.length).toBeGreaterThan(0);
        expect(secretLeaks(r.out.toString('latin1') + seen, SECRET, 8)).toEqual([]);
        // Nothing of the line that holds it either: what was passed on decodes to whole lines.
        expect(seen.includes('// echoed')).toBe(false);
      });
    }

    it('a chunk that ends inside the secret is held, although its own bytes end a line', async () => {
      // Find a cut of the compressed stream right after a 0x0a byte (where a search of the
      // compressed bytes alone would let them go) that decodes to a part of the secret.
      let cut: { tgz: Buffer; at: number } | null = null;
      for (let line = 10; !cut && line < 290; line++) {
        const tgz = gzipSync(fileText(300, `// echoed: ${SECRET}`, line));
        for (let at = 1; at < tgz.length && !cut; at++) {
          if (tgz[at - 1] !== 0x0a) continue;
          const seen = decodePrefix(tgz.subarray(0, at));
          if (seen.includes(`// echoed: ${SECRET.slice(0, 8)}`) && !seen.includes(SECRET)) cut = { tgz, at };
        }
      }
      expect(cut).not.toBeNull();
      const r = await run([cut!.tgz.subarray(0, cut!.at), cut!.tgz.subarray(cut!.at)]);
      expect(r.error?.message).toMatch(/carries a secret/);
      const seen = decodePrefix(r.out);
      expect(secretLeaks(r.out.toString('latin1') + seen, SECRET, 8)).toEqual([]);
      expect(seen.includes('// echoed')).toBe(false);
    });

    it('the secret deep inside a large gzip stream: what left before it holds none of it', async () => {
      const tgz = gzipSync(fileText(30_000, `Authorization: Bearer ${SECRET}`, 25_000));
      const r = await run(pieces(tgz, 16 * 1024));
      expect(r.error?.message).toMatch(/carries a secret/);
      const seen = decodePrefix(r.out);
      expect(seen.includes('f20000')).toBe(true);
      expect(secretLeaks(r.out.toString('latin1') + seen, SECRET, 8)).toEqual([]);
    });

    it('the secret in a stored (uncompressed) block', async () => {
      const r = await run(pieces(gzipSync(Buffer.from(`token=${SECRET}\n`), { level: 0 }), 7));
      expect(r.error?.message).toMatch(/carries a secret/);
      expect(r.out.length).toBe(0);
    });

    it('the secret in the gzip header (a file name), which decoding skips', async () => {
      const body = gzipSync(fileText(50));
      const named = Buffer.concat([body.subarray(0, 3), Buffer.of(body[3]! | 0x08), body.subarray(4, 10), Buffer.from(`${SECRET}\0`), body.subarray(10)]);
      expect(gunzipSync(named).equals(gunzipSync(body))).toBe(true);
      const r = await run(pieces(named, 5));
      expect(r.error?.message).toMatch(/carries a secret/);
      expect(secretLeaks(r.out.toString('latin1'), SECRET, 8)).toEqual([]);
    });

    it('the secret inside zlib', async () => {
      const r = await run([deflateSync(Buffer.from(`{"authorization":"Bearer ${SECRET}"}`))]);
      expect(r.error?.message).toMatch(/carries a secret/);
      expect(r.out.length).toBe(0);
    });

    it('the secret three layers deep: refused as unreadable', async () => {
      const r = await run([gzipSync(gzipSync(Buffer.from(`token: ${SECRET}\n`)))]);
      expect(r.error?.message).toMatch(/compressed three times/);
      expect(r.out.length).toBe(0);
    });

    it('zstd inside: refused as before', async () => {
      const r = await run([Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0])]);
      expect(r.error?.message).toMatch(/compressed twice/);
      expect(r.out.length).toBe(0);
    });
  });

  describe('refused when it cannot be searched', () => {
    it('data after the end of a zlib stream (which a decoder would skip unread)', async () => {
      const hidden = gzipSync(Buffer.from(SECRET)).toString('latin1').replace(/^\x1f\x8b/, 'XX');
      const r = await run([Buffer.concat([deflateSync(Buffer.from('a small file\n')), Buffer.from(hidden, 'latin1')])]);
      expect(r.error?.message).toMatch(/data after its compressed content/);
      expect(r.out.length).toBe(0);
    });

    it('data after the end of a gzip stream', async () => {
      const r = await run([gzipSync(Buffer.from('a small file\n')), Buffer.from('garbage that is not gzip')]);
      expect(r.error?.message).toMatch(/cannot decode/);
    });

    it('a cut-off gzip stream fails, with what was searched passed on and nothing else', async () => {
      const tgz = gzipSync(fileText(5000));
      const r = await run(pieces(tgz.subarray(0, tgz.length - 100), 8192));
      expect(r.error?.message).toMatch(/cannot decode \(unexpected end of file\)/);
      expect(tgz.subarray(0, r.out.length).equals(r.out)).toBe(true);
    });

    it('a compression bomb is cut off after a bounded amount of decoding', async () => {
      const bomb = gzipSync(Buffer.alloc(INNER_FREE + 64 * 1024 * 1024));
      expect(bomb.length).toBeLessThan(200 * 1024);
      const started = Date.now();
      const r = await run(pieces(bomb, 16 * 1024));
      expect(r.error?.message).toMatch(/expands more than 128×/);
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(r.out.length).toBeLessThan(bomb.length);
    });

    it('compressed bytes that decode to almost nothing are not held without bound', async () => {
      // Gzip members with long comments, each decoding to one character and no line end: what
      // they decode to cannot be cleared, so the compressed bytes would wait for ever.
      const member = (c: string) => {
        const body = gzipSync(Buffer.from(c));
        return Buffer.concat([body.subarray(0, 3), Buffer.of(body[3]! | 0x10), body.subarray(4, 10), Buffer.alloc(8 * 1024, 0x61), Buffer.of(0), body.subarray(10)]);
      };
      const members = Array.from({ length: Math.ceil((MAX_HELD * 1.5) / (8 * 1024)) }, () => member('x'));
      expect(gunzipSync(Buffer.concat(members.slice(0, 2))).toString()).toBe('xx');
      const r = await run(members);
      expect(r.error?.message).toMatch(/decodes too slowly/);
      expect(r.out.length).toBeLessThan(MAX_HELD);
    });
  });
});
