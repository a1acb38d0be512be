// git's pkt-line framing: four hex digits of length (the digits included), then the payload;
// "0000" is a flush packet. Read incrementally, written for answers.

/** The largest packet git sends or accepts (LARGE_PACKET_MAX): 65520 bytes with its length. */
export const MAX_PKT = 65520;

export class PktLineError extends Error {}

export type Pkt = { readonly kind: 'flush' } | { readonly kind: 'data'; readonly payload: Buffer };

const FLUSH: Pkt = Object.freeze({ kind: 'flush' });

/**
 * Reads packets out of bytes as they arrive; `rest()` hands back what follows the last one read.
 * Chunks are joined only once a whole packet is there, so a packet sent a byte at a time costs
 * linear, not quadratic, copying.
 */
export class PktLineReader {
  private parts: Buffer[] = [];
  private size = 0;
  /** Bytes needed before the next packet can be read: its length header, then all of it. */
  private need = 4;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.parts.push(chunk);
    this.size += chunk.length;
  }

  /** The next packet, or null until more bytes arrive. Throws PktLineError on a malformed one. */
  next(): Pkt | null {
    if (this.size < this.need) return null;
    const buf = this.joined();
    const digits = buf.toString('latin1', 0, 4);
    if (!/^[0-9a-fA-F]{4}$/.test(digits)) throw new PktLineError(`malformed pkt-line length ${JSON.stringify(digits)}`);
    const length = parseInt(digits, 16);
    if (length === 0) {
      this.keep(buf.subarray(4));
      return FLUSH;
    }
    // 0001-0003 are delimiters of protocol v2, which a push never uses.
    if (length < 4 || length > MAX_PKT) throw new PktLineError(`pkt-line length ${digits} is out of range`);
    if (buf.length < length) {
      this.need = length;
      return null;
    }
    this.keep(buf.subarray(length));
    return { kind: 'data', payload: buf.subarray(4, length) };
  }

  /** Bytes held that are not part of any packet read so far. */
  rest(): Buffer {
    const rest = this.joined();
    this.keep(Buffer.alloc(0));
    return rest;
  }

  get buffered(): number {
    return this.size;
  }

  private joined(): Buffer {
    if (this.parts.length !== 1) this.parts = [Buffer.concat(this.parts)];
    return this.parts[0] ?? Buffer.alloc(0);
  }

  private keep(rest: Buffer): void {
    this.parts = rest.length > 0 ? [rest] : [];
    this.size = rest.length;
    this.need = 4;
  }
}

/** One data packet. */
export function pktLine(payload: string | Buffer): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  if (body.length + 4 > MAX_PKT) throw new RangeError('pkt-line payload too long');
  return Buffer.concat([Buffer.from((body.length + 4).toString(16).padStart(4, '0'), 'latin1'), body]);
}

export const FLUSH_PKT = Buffer.from('0000', 'latin1');
