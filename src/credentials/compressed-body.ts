// A response body after its Content-Encoding was decoded, on its way to the session. Usually it
// is plain and echoed secrets are replaced in it (Replacer). But what a Content-Encoding
// often wraps is itself compressed: a registry sends a `.tgz` under `Content-Encoding: gzip`
// (Verdaccio does). Replacing bytes inside compressed data would corrupt it, and passing it on
// unread would let an echoed secret through, so such a body (gzip or zlib inside) is passed on
// as it is while a second decoder reads it: every chunk is held until what it decodes to, and the
// chunk itself, have been searched for every form of the secrets. A secret found there cannot be
// replaced: the body is refused (cut off), and nothing of the secret has been passed on (but the
// bits of at most one compressed symbol the decoder has read part of, less than one character).
//
// Bounds: the inner stream may expand at most INNER_RATIO times (plus INNER_FREE) before it is
// refused, so a compression bomb costs bounded work; at most MAX_HELD bytes wait for their
// decoded text to be searched. What is held depends on line ends and lengths only (Replacer),
// never on whether a guess of the secret matched.
import { createGunzip, createInflate } from 'node:zlib';
import type { Gunzip, Inflate } from 'node:zlib';
import { Transform } from 'node:stream';
import type { TransformCallback } from 'node:stream';
import { Replacer } from './replace-stream.js';
import type { Replacement } from './replace-stream.js';

/** Decoded bytes allowed beyond INNER_RATIO × the compressed bytes read so far. */
export const INNER_FREE = 16 * 1024 * 1024;
/** Real tarballs expand 3-10×; deflate's own maximum is about 1032×. */
export const INNER_RATIO = 128;
/** Compressed bytes that may wait for their decoded text to be searched. */
export const MAX_HELD = 1024 * 1024;

const EMPTY = Buffer.alloc(0);

/** Which compressed format `head` (the first 4 bytes of a body, or all of a shorter one) starts. */
export function compressedKind(head: Buffer): 'gzip' | 'zlib' | 'zstd' | null {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 2 && (head[0]! & 0x0f) === 8 && ((head[0]! << 8) | head[1]!) % 31 === 0) return 'zlib';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  return null;
}

/** A pending chunk of the compressed body: where it ends there and in what it decodes to. */
interface Held {
  readonly bytes: Buffer;
  readonly end: number;
  decodedEnd: number;
}

/**
 * The decoded body of a response from `host`: scrubbed when plain, searched inside when it is a
 * gzip or zlib stream, refused when compressed in a way the proxy cannot read (zstd, or three
 * layers deep).
 */
export class DecodedBodyScrub extends Transform {
  private head: Buffer | null = EMPTY;
  private plain: Replacer | null = null;
  private inner: InnerSearch | null = null;

  constructor(
    private readonly host: string,
    private readonly replacements: readonly Replacement[] | (() => readonly Replacement[]),
    private readonly onScrub: () => void,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.head !== null) {
      this.head = Buffer.concat([this.head, chunk]);
      if (this.head.length < 4) return callback();
      chunk = this.head;
      this.head = null;
      const refused = this.choose(chunk);
      if (refused) return callback(refused);
    }
    if (this.plain) {
      for (const piece of this.plain.push(chunk)) this.push(piece);
      return callback();
    }
    this.inner!.write(chunk, callback);
  }

  override _flush(callback: TransformCallback): void {
    if (this.head !== null) {
      const head = this.head;
      this.head = null;
      const refused = this.choose(head);
      if (refused) return callback(refused);
      if (head.length > 0) {
        this._transform(head, 'latin1', (err) => (err ? callback(err) : this._flush(callback)));
        return;
      }
    }
    if (this.plain) return callback(null, this.plain.flush());
    this.inner!.end(callback);
  }

  override _destroy(err: Error | null, callback: (error: Error | null) => void): void {
    this.inner?.stop();
    callback(err);
  }

  private choose(head: Buffer): Error | null {
    const kind = compressedKind(head);
    if (kind === 'zstd') return new Error(`response from ${this.host} is compressed twice, which hides its content from the scrubber`);
    if (kind === null) {
      this.plain = new Replacer(this.replacements, this.onScrub);
      return null;
    }
    this.inner = new InnerSearch(this.host, kind, this.replacements, (piece) => this.push(piece));
    return null;
  }
}

/** Searches a gzip or zlib stream inside a decoded body, passing it on only once it is searched. */
class InnerSearch {
  private readonly decoder: Gunzip | Inflate;
  /** Searches the compressed bytes themselves (stored blocks, gzip header fields). */
  private readonly rawSearch: Replacer;
  /** Searches what they decode to. */
  private readonly decodedSearch: Replacer;
  private found = false;
  private failure: Error | null = null;
  private readonly held: Held[] = [];
  private heldBytes = 0;
  private written = 0;
  private rawCleared = 0;
  private decoded = 0;
  private decodedCleared = 0;
  private decodedHead: Buffer | null = EMPTY;
  private decoderEnded = false;
  /** The callback of the write or end under way: the decoder never calls back once it failed. */
  private waiting: TransformCallback | null = null;

  constructor(
    private readonly host: string,
    kind: 'gzip' | 'zlib',
    replacements: readonly Replacement[] | (() => readonly Replacement[]),
    private readonly pass: (piece: Buffer) => void,
  ) {
    const onFound = () => {
      this.found = true;
    };
    this.rawSearch = new Replacer(replacements, onFound);
    this.decodedSearch = new Replacer(replacements, onFound);
    this.decoder = kind === 'gzip' ? createGunzip() : createInflate();
    this.decoder.on('readable', () => this.drain());
    this.decoder.on('end', () => {
      this.decoderEnded = true;
    });
    this.decoder.on('error', (err: Error) => this.fail(`response from ${this.host} has compressed content the scrubber cannot decode (${err.message})`));
  }

  write(chunk: Buffer, callback: TransformCallback): void {
    if (this.failure) return callback(this.failure);
    this.written += chunk.length;
    this.rawCleared += length(this.rawSearch.push(chunk));
    const entry: Held = { bytes: chunk, end: this.written, decodedEnd: Infinity };
    this.held.push(entry);
    this.heldBytes += chunk.length;
    if (this.check()) return callback(this.failure);
    this.waiting = callback;
    this.decoder.write(chunk, () => {
      if (this.failure) return;
      // Everything this chunk decodes to has been pushed by now (the decoder keeps no output back).
      this.drain();
      entry.decodedEnd = this.decoded;
      const unread = this.written - this.decoder.bytesWritten;
      // A zlib decoder ignores what follows the end of its stream: only zero padding may.
      if (unread > 0 && chunk.subarray(Math.max(0, chunk.length - unread)).some((b) => b !== 0)) {
        this.fail(`response from ${this.host} has data after its compressed content, which the scrubber cannot read`);
      }
      if (this.check()) return;
      this.release();
      this.settle(null);
    });
  }

  end(callback: TransformCallback): void {
    if (this.failure) return callback(this.failure);
    this.rawCleared += length([this.rawSearch.flush()]);
    this.waiting = callback;
    const finish = () => {
      if (this.failure) return;
      this.drain();
      this.decodedCleared += length([this.decodedSearch.flush()]);
      if (this.check()) return;
      for (const h of this.held.splice(0)) this.pass(h.bytes);
      this.heldBytes = 0;
      this.settle(null);
    };
    if (this.decoderEnded) return finish();
    this.decoder.once('end', finish);
    this.decoder.end();
    // 'end' comes only once everything is read.
    this.drain();
  }

  stop(): void {
    this.waiting = null;
    this.decoder.destroy();
  }

  /** Calls the callback of the write (or end) under way, once. */
  private settle(err: Error | null): void {
    const callback = this.waiting;
    this.waiting = null;
    callback?.(err);
  }

  private drain(): void {
    let piece: Buffer | null;
    while (!this.failure && (piece = this.decoder.read() as Buffer | null) !== null) {
      this.decoded += piece.length;
      if (this.decodedHead !== null) {
        // A third layer of compression is not searched: refused as before.
        this.decodedHead = Buffer.concat([this.decodedHead, piece]);
        if (this.decodedHead.length >= 4 && compressedKind(this.decodedHead.subarray(0, 4))) {
          return this.fail(`response from ${this.host} is compressed three times, which hides its content from the scrubber`);
        }
        if (this.decodedHead.length >= 4) this.decodedHead = null;
      }
      if (this.decoded > INNER_FREE + INNER_RATIO * this.written) {
        return this.fail(`response from ${this.host} expands more than ${INNER_RATIO}× inside its Content-Encoding, too much to search for echoed secrets`);
      }
      this.decodedCleared += length(this.decodedSearch.push(piece));
    }
  }

  /** True (and the body failed, its callback told) when a secret was found or a bound was passed. */
  private check(): boolean {
    if (this.found) this.fail(`response from ${this.host} carries a secret inside compressed content, which cannot be replaced there`);
    else if (this.heldBytes > MAX_HELD) this.fail(`response from ${this.host} has compressed content that decodes too slowly to search for echoed secrets`);
    return this.failure !== null;
  }

  /** Passes on every held chunk whose own bytes and decoded text have both been searched. */
  private release(): void {
    while (this.held.length > 0) {
      const h = this.held[0]!;
      if (h.end > this.rawCleared || h.decodedEnd > this.decodedCleared) return;
      this.held.shift();
      this.heldBytes -= h.bytes.length;
      this.pass(h.bytes);
    }
  }

  private fail(why: string): void {
    if (this.failure) return;
    this.failure = new Error(why);
    this.held.length = 0;
    this.heldBytes = 0;
    this.decoder.destroy();
    this.settle(this.failure);
  }
}

function length(pieces: readonly Buffer[]): number {
  let n = 0;
  for (const p of pieces) n += p.length;
  return n;
}
