// A streaming find-and-replace over bytes, safe across chunk boundaries: a chunk's tail that could
// begin a needle is held back until the next chunk shows whether the needle straddles.
import { Transform } from 'node:stream';
import type { TransformCallback } from 'node:stream';

export interface Replacement {
  readonly find: Buffer;
  readonly replace: Buffer;
}

export interface ChunkScrubber {
  /** Output pieces for one chunk (the chunk itself, sliced, when nothing changes). */
  push(chunk: Buffer): Buffer[];
  flush(): Buffer;
}

/**
 * The scrubbing itself, without stream machinery: the proxy calls it directly per chunk on its hot
 * path; ReplaceStream wraps it where a stream is needed (after a decompressor).
 */
export class Replacer implements ChunkScrubber {
  private carry: Buffer = Buffer.alloc(0);
  private readonly keep: number;
  private replacedAny = false;
  private seen = 0;

  /**
   * @param limit stop replacing after this many input bytes (the rest streams through untouched);
   *   Infinity for no limit.
   * @param onReplace called once, on the first replacement.
   */
  constructor(
    private readonly replacements: readonly Replacement[],
    private readonly onReplace: () => void = () => {},
    private readonly limit = Infinity,
  ) {
    this.keep = Math.max(0, ...replacements.map((r) => r.find.length)) - 1;
  }

  /**
   * Output for one chunk, as pieces (no copy of the chunk); a possible needle start at its end is
   * held back for the next.
   */
  push(chunk: Buffer): Buffer[] {
    if (this.seen >= this.limit) return [chunk];
    this.seen += chunk.length;
    const last = this.seen >= this.limit;
    let data = chunk;
    let from = 0;
    const out: Buffer[] = [];
    if (this.carry.length > 0) {
      const carry = this.carry;
      if (chunk.length >= this.keep) {
        // Only a needle that starts in the held-back bytes can straddle, and it ends within the
        // next `keep` bytes: settle it on that small joint instead of copying the whole chunk.
        const joint = Buffer.concat([carry, chunk.subarray(0, this.keep)]);
        const settled = this.scan(joint, 0, carry.length, carry.length);
        out.push(...settled.out);
        from = settled.consumed - carry.length;
      } else {
        data = Buffer.concat([carry, chunk]);
      }
    }
    const safeEnd = last ? data.length : Math.max(from, data.length - this.heldBack(data));
    const { out: rest, consumed } = this.scan(data, from, safeEnd);
    out.push(...rest);
    this.carry = data.subarray(consumed);
    if (last) {
      out.push(this.carry);
      this.carry = Buffer.alloc(0);
    }
    return out.filter((b) => b.length > 0);
  }

  /** What was held back, at the end of the body. */
  flush(): Buffer {
    const { out } = this.scan(this.carry, 0, this.carry.length);
    this.carry = Buffer.alloc(0);
    return Buffer.concat(out);
  }

  /** Replaces every needle in one complete body (for responses small enough to hold whole). */
  replaceWhole(data: Buffer): Buffer {
    const { out } = this.scan(data, 0, data.length);
    return out.length === 1 ? out[0]! : Buffer.concat(out);
  }

  /**
   * How many trailing bytes could be the start of a needle and must wait for the next chunk.
   * Usually none: holding back a fixed window would delay every streamed event (SSE) until the
   * next one arrives.
   */
  private heldBack(data: Buffer): number {
    // Byte comparisons in place: this runs on every chunk of every scrubbed body, and slicing
    // and comparing buffers per candidate length allocated dozens of objects per chunk.
    const end = data.length;
    for (let k = Math.min(this.keep, end); k > 0; k--) {
      const from = end - k;
      for (const { find } of this.replacements) {
        if (find.length <= k) continue;
        let i = 0;
        while (i < k && data[from + i] === find[i]) i++;
        if (i === k) return k;
      }
    }
    return 0;
  }

  /**
   * Replaces needles from `from` on (only those starting before `maxStart`); returns the output
   * and how much input it covers (at least up to `safeEnd`).
   */
  private scan(data: Buffer, from: number, safeEnd: number, maxStart = Infinity): { out: Buffer[]; consumed: number } {
    const out: Buffer[] = [];
    let pos = from;
    for (;;) {
      let best = -1;
      let which: Replacement | undefined;
      for (const r of this.replacements) {
        const at = data.indexOf(r.find, pos);
        if (at !== -1 && (best === -1 || at < best)) {
          best = at;
          which = r;
        }
      }
      if (best === -1 || !which || best >= maxStart) break;
      out.push(data.subarray(pos, best), which.replace);
      pos = best + which.find.length;
      if (!this.replacedAny) {
        this.replacedAny = true;
        this.onReplace();
      }
    }
    const end = Math.max(pos, safeEnd);
    out.push(data.subarray(pos, end));
    return { out, consumed: end };
  }
}

export class ReplaceStream extends Transform {
  private readonly replacer: Replacer;

  constructor(replacements: readonly Replacement[], onReplace: () => void = () => {}, limit = Infinity) {
    super();
    this.replacer = new Replacer(replacements, onReplace, limit);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    for (const piece of this.replacer.push(chunk)) this.push(piece);
    callback();
  }

  override _flush(callback: TransformCallback): void {
    callback(null, this.replacer.flush());
  }
}
