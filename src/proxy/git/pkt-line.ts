// git's pkt-line framing: four hex digits of length (the digits included), then the payload;
// "0000" is a flush packet. Read incrementally, written for answers.

/** The largest packet git sends or accepts (LARGE_PACKET_MAX): 65520 bytes with its length. */
export const MAX_PKT = 65520;

export class PktLineError extends Error {}

export type Pkt = { readonly kind: 'flush' } | { readonly kind: 'data'; readonly payload: Buffer };

const FLUSH: Pkt = Object.freeze({ kind: 'flush' });

/** Reads packets out of bytes as they arrive; `rest()` hands back what follows the last one read. */
export class PktLineReader {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
  }

  /** The next packet, or null until more bytes arrive. Throws PktLineError on a malformed one. */
  next(): Pkt | null {
    if (this.buf.length < 4) return null;
    const digits = this.buf.toString('latin1', 0, 4);
    if (!/^[0-9a-fA-F]{4}$/.test(digits)) throw new PktLineError(`malformed pkt-line length ${JSON.stringify(digits)}`);
    const length = parseInt(digits, 16);
    if (length === 0) {
      this.buf = this.buf.subarray(4);
      return FLUSH;
    }
    // 0001-0003 are delimiters of protocol v2, which a push never uses.
    if (length < 4 || length > MAX_PKT) throw new PktLineError(`pkt-line length ${digits} is out of range`);
    if (this.buf.length < length) return null;
    const payload = this.buf.subarray(4, length);
    this.buf = this.buf.subarray(length);
    return { kind: 'data', payload };
  }

  /** Bytes held that are not part of any packet read so far. */
  rest(): Buffer {
    const rest = this.buf;
    this.buf = Buffer.alloc(0);
    return rest;
  }

  get buffered(): number {
    return this.buf.length;
  }
}

/** One data packet. */
export function pktLine(payload: string | Buffer): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  if (body.length + 4 > MAX_PKT) throw new RangeError('pkt-line payload too long');
  return Buffer.concat([Buffer.from((body.length + 4).toString(16).padStart(4, '0'), 'latin1'), body]);
}

export const FLUSH_PKT = Buffer.from('0000', 'latin1');
