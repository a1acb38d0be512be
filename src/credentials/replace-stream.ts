// A streaming find-and-replace over bytes, safe across chunk boundaries.
//
// What is held back for the next chunk never depends on the needles' contents: output goes up to
// the last line end of what has arrived, and a line longer than LINE_CAP is released except for a
// fixed window. Secrets never contain a line end, so no needle can straddle one. Holding back only
// a tail that could begin a needle (the obvious way) is a timing oracle: a session that controls
// reflected streamed text would see whether its guess of a secret's prefix was held.
import { Transform } from 'node:stream';
import type { TransformCallback } from 'node:stream';

export interface Replacement {
  readonly find: Buffer;
  readonly replace: Buffer;
  /**
   * For a base64 form found mid-run: the character just before `find` carries `leadBits` low bits
   * of the secret and the one just after it `trailBits` high bits. Those bits are overwritten with
   * the same bits of `leadValue`/`trailValue` (6-bit base64 values), the rest kept, so the run
   * still decodes and nothing of the secret is left at its edges.
   */
  readonly edges?: { readonly leadBits: number; readonly leadValue: number; readonly trailBits: number; readonly trailValue: number };
}

export interface ChunkScrubber {
  /** Output pieces for one chunk (the chunk itself, sliced, when nothing changes). */
  push(chunk: Buffer): Buffer[];
  flush(): Buffer;
}

/** Unterminated lines longer than this are released except for the last `window` bytes. */
export const LINE_CAP = 16 * 1024;
/**
 * The window kept of an over-long line (and of WebSocket messages): fixed, so how much is held
 * does not give away a secret's length; only a form longer than this (a secret of several KiB)
 * widens it.
 */
export const HOLD_WINDOW = 4096;
const NEWLINE = 0x0a;
const EMPTY = Buffer.alloc(0);

const B64_ALPHABET = Buffer.from('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/');
const B64_VALUE = new Int8Array(256).fill(-1);
B64_ALPHABET.forEach((c, i) => (B64_VALUE[c] = i));

/**
 * The scrubbing itself, without stream machinery: the proxy calls it directly per chunk on its hot
 * path; ReplaceStream wraps it where a stream is needed (after a decompressor, request bodies).
 */
export class Replacer implements ChunkScrubber {
  private carry: Buffer = EMPTY;
  /** Bytes kept from an over-long line: room for the longest needle and its two edge characters. */
  window: number;
  private replacedAny = false;
  private seen = 0;
  private replacements: readonly Replacement[];

  /**
   * @param needles the needles, or where to get them before each chunk: a secret that rotates
   *   while a long response streams is searched for from the next chunk on (the function returns
   *   the same array while nothing changed).
   * @param limit stop replacing after this many input bytes (the rest streams through untouched);
   *   Infinity for no limit.
   * @param onReplace called once, on the first replacement.
   */
  constructor(
    private readonly needles: readonly Replacement[] | (() => readonly Replacement[]),
    private readonly onReplace: () => void = () => {},
    private readonly limit = Infinity,
  ) {
    this.replacements = typeof needles === 'function' ? needles() : needles;
    this.window = windowFor(this.replacements, HOLD_WINDOW);
  }

  /** Takes up needles that changed since the last chunk; the window only ever grows. */
  private refresh(): void {
    if (typeof this.needles !== 'function') return;
    const now = this.needles();
    if (now === this.replacements) return;
    this.replacements = now;
    this.window = windowFor(now, this.window);
  }

  push(chunk: Buffer): Buffer[] {
    if (this.seen >= this.limit) return [chunk];
    this.refresh();
    this.seen += chunk.length;
    const last = this.seen >= this.limit;
    const carry = this.carry;
    const out: Buffer[] = [];
    let data = chunk;
    let from = 0;
    let pendingBefore = 0;
    if (carry.length > 0) {
      if (chunk.length > this.window) {
        const nl = chunk.lastIndexOf(NEWLINE);
        if (!last && nl === -1 && carry.length + chunk.length <= LINE_CAP) {
          // The line goes on and is still short: nothing can be released yet.
          this.carry = Buffer.concat([carry, chunk]);
          return out;
        }
        // The held line is released now. Needles that start in it (or at the chunk's first
        // byte, whose lead character it holds) are settled on a small joint instead of copying
        // the whole chunk; each ends within `window` bytes.
        const joint = Buffer.concat([carry, chunk.subarray(0, this.window)]);
        const settled = this.scan(joint, 0, carry.length, carry.length + 1, false);
        out.push(...settled.out);
        from = settled.consumed - carry.length;
        pendingBefore = carry.length;
      } else {
        data = Buffer.concat([carry, chunk]);
      }
    }
    let cut = data.length;
    if (!last) {
      const nl = data.lastIndexOf(NEWLINE);
      const open = data.length - (nl + 1) + (nl === -1 ? pendingBefore : 0);
      cut = open > LINE_CAP ? data.length - this.window : nl + 1;
    }
    cut = Math.max(cut, from);
    const { out: rest, consumed } = this.scan(data, from, cut, cut + 1, last);
    out.push(...rest);
    this.carry = consumed < data.length ? data.subarray(consumed) : EMPTY;
    if (last && this.carry.length > 0) {
      out.push(this.carry);
      this.carry = EMPTY;
    }
    return out.filter((b) => b.length > 0);
  }

  /** What was held back, at the end of the body. */
  flush(): Buffer {
    this.refresh();
    const { out } = this.scan(this.carry, 0, this.carry.length, Infinity, true);
    this.carry = EMPTY;
    return out.length === 1 ? out[0]! : Buffer.concat(out);
  }

  /** Replaces every needle in one complete body (for responses small enough to hold whole). */
  replaceWhole(data: Buffer): Buffer {
    this.refresh();
    const { out } = this.scan(data, 0, data.length, Infinity, true);
    return out.length === 1 ? out[0]! : Buffer.concat(out);
  }

  /**
   * Scrubs consecutive messages as one text and splits the result where they met, so a needle
   * split between them is found; its replacement goes into the message where it started, and
   * whatever of it was in later messages is dropped from there. `found`, when given, gets each
   * needle replaced: the message it started in and where it ended (an offset in all of them).
   */
  replaceAcross(parts: readonly Buffer[], found?: { part: number; end: number }[]): Buffer[] {
    this.refresh();
    const ends: number[] = [];
    let total = 0;
    for (const part of parts) ends.push((total += part.length));
    const partOf = (at: number) => {
      let i = 0;
      while (i < ends.length - 1 && at >= ends[i]!) i++;
      return i;
    };
    const spans: Span[] = [];
    const { out } = this.scan(Buffer.concat(parts as Buffer[]), 0, total, Infinity, true, spans);
    const result: Buffer[][] = parts.map(() => []);
    out.forEach((piece, i) => {
      const span = spans[i]!;
      if (!span.copied) {
        const part = partOf(span.start);
        result[part]!.push(piece);
        found?.push({ part, end: span.end });
        return;
      }
      // Input passed through: cut at every message boundary it crosses.
      let at = span.start;
      while (at < span.end) {
        const part = partOf(at);
        const upTo = Math.min(span.end, ends[part]!);
        result[part]!.push(piece.subarray(at - span.start, upTo - span.start));
        at = upTo;
      }
    });
    return result.map((pieces) => Buffer.concat(pieces));
  }

  /**
   * Replaces needles that start at or after `from` and before `maxStart`; returns the output and
   * how much input it covers (up to `safeEnd` at least, unless a needle's trailing edge character
   * has not arrived yet, when output stops before that needle).
   */
  private scan(data: Buffer, from: number, safeEnd: number, maxStart: number, final: boolean, spans?: Span[]): { out: Buffer[]; consumed: number } {
    const out: Buffer[] = [];
    // Where each output piece came from, when asked (replaceAcross): input copied, or a needle.
    const note = spans ? (start: number, end: number, copied: boolean) => spans.push({ start, end, copied }) : null;
    let pos = from;
    for (;;) {
      let best = -1;
      let which: Replacement | undefined;
      for (const r of this.replacements) {
        const at = data.indexOf(r.find, pos);
        if (at !== -1 && (best === -1 || at < best || (at === best && r.find.length > which!.find.length))) {
          best = at;
          which = r;
        }
      }
      if (best === -1 || !which || best >= maxStart) break;
      const end = best + which.find.length;
      const edges = which.edges;
      if (edges && edges.trailBits > 0 && end >= data.length && !final) {
        // The character after this needle holds secret bits and has not arrived: stop before it.
        const stop = edges.leadBits > 0 && best - 1 >= pos ? best - 1 : best;
        out.push(data.subarray(pos, stop));
        note?.(pos, stop, true);
        return { out, consumed: stop };
      }
      let start = best;
      let lead: Buffer | null = null;
      if (edges && edges.leadBits > 0 && best - 1 >= pos && B64_VALUE[data[best - 1]!]! >= 0) {
        const mask = (1 << edges.leadBits) - 1;
        lead = Buffer.of(B64_ALPHABET[(B64_VALUE[data[best - 1]!]! & ~mask) | (edges.leadValue & mask)]!);
        start = best - 1;
      }
      out.push(data.subarray(pos, start));
      note?.(pos, start, true);
      if (lead) out.push(lead);
      out.push(which.replace);
      pos = end;
      if (edges && edges.trailBits > 0 && end < data.length && B64_VALUE[data[end]!]! >= 0) {
        const mask = ((1 << edges.trailBits) - 1) << (6 - edges.trailBits);
        out.push(Buffer.of(B64_ALPHABET[(edges.trailValue & mask) | (B64_VALUE[data[end]!]! & ~mask & 63)]!));
        pos = end + 1;
      }
      if (note) for (let i = out.length - spans!.length; i > 0; i--) note(start, pos, false);
      if (!this.replacedAny) {
        this.replacedAny = true;
        this.onReplace();
      }
    }
    const end = Math.max(pos, safeEnd);
    out.push(data.subarray(pos, end));
    note?.(pos, end, true);
    return { out, consumed: end };
  }
}

function windowFor(replacements: readonly Replacement[], least: number): number {
  return Math.max(least, Math.max(0, ...replacements.map((r) => r.find.length)) + 2);
}

interface Span {
  readonly start: number;
  readonly end: number;
  /** True: the piece is input passed through; false: written for a needle starting at `start`. */
  readonly copied: boolean;
}

export class ReplaceStream extends Transform {
  private readonly replacer: Replacer;

  constructor(replacements: readonly Replacement[] | (() => readonly Replacement[]), onReplace: () => void = () => {}, limit = Infinity) {
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
