// A request body read whole before anything is sent (a document to decide on, a body to sign or
// to answer here), never past a bound: beyond it nothing more is kept and the caller refuses.
import type { Readable } from 'node:stream';

export interface BoundedRead {
  /** The whole body, once it ended within the bound. */
  done(bytes: Buffer): void;
  /** Past the bound: what was read is dropped; `done` is never called. */
  tooLarge(): void;
  /** The client's stream failed first. */
  failed(err: Error): void;
}

/** Reads `body` whole, at most `max` bytes; exactly one of the callbacks is called, once. */
export function readBounded(body: Readable, max: number, on: BoundedRead): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let settled = false;
  body.on('error', (err: Error) => {
    if (settled) return;
    settled = true;
    on.failed(err);
  });
  body.on('data', (chunk: Buffer) => {
    if (settled) return;
    size += chunk.length;
    if (size > max) {
      settled = true;
      chunks.length = 0;
      on.tooLarge();
      return;
    }
    chunks.push(chunk);
  });
  body.once('end', () => {
    if (settled) return;
    settled = true;
    on.done(Buffer.concat(chunks));
  });
}
