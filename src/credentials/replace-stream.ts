// A streaming find-and-replace over bytes, safe across chunk boundaries: the last (longest needle
// - 1) bytes of each chunk are held back until the next chunk shows whether a needle straddles.
import { Transform } from 'node:stream';
import type { TransformCallback } from 'node:stream';

export interface Replacement {
  readonly find: Buffer;
  readonly replace: Buffer;
}

export class ReplaceStream extends Transform {
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
    super();
    this.keep = Math.max(0, ...replacements.map((r) => r.find.length)) - 1;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.seen >= this.limit) {
      callback(null, chunk);
      return;
    }
    this.seen += chunk.length;
    const data = this.carry.length > 0 ? Buffer.concat([this.carry, chunk]) : chunk;
    const { out, consumed } = this.scan(data, this.seen >= this.limit ? data.length : Math.max(0, data.length - this.keep));
    this.carry = data.subarray(consumed);
    if (this.seen >= this.limit) {
      out.push(this.carry);
      this.carry = Buffer.alloc(0);
    }
    callback(null, out.length === 1 ? out[0] : Buffer.concat(out));
  }

  override _flush(callback: TransformCallback): void {
    const { out } = this.scan(this.carry, this.carry.length);
    this.carry = Buffer.alloc(0);
    callback(null, Buffer.concat(out));
  }

  /** Replaces needles starting before `safeEnd`; returns output and how much input it covers. */
  private scan(data: Buffer, safeEnd: number): { out: Buffer[]; consumed: number } {
    const out: Buffer[] = [];
    let pos = 0;
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
      if (best === -1 || !which) break;
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
