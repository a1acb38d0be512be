// Where an upstream response goes when the session has credentials: its headers scrubbed of echoed
// secrets, and its body too (small bodies whole, others chunk by chunk or through a decoding
// transform). A body the scrubber cannot read could carry an echoed secret: it is refused.
import type { Readable } from 'node:stream';
import type { ChunkScrubber, Replacement } from '../credentials/replace-stream.js';
import type { CredentialBroker } from '../credentials/broker.js';
import type { BodySink, ResponseOut } from './http1/types.js';

export interface ScrubbedResponse {
  readonly host: string;
  readonly method: string | undefined;
  readonly statusCode: number;
  /** Headers to send, hop-by-hop headers already dropped. */
  readonly headers: Record<string, string | string[]>;
  /** The request's own swap echoes. */
  readonly echoes: readonly Replacement[];
  /** Something was replaced. */
  onScrub(): void;
  /** The body cannot be scrubbed (why): answer 502, or cut the response off if it is under way. */
  unreadable(why: string): void;
}

/** Responses up to this size are scrubbed whole (see wholeBody). */
const WHOLE_BODY_LIMIT = 64 * 1024;

export function responseHasBody(method: string | undefined, status: number): boolean {
  return method !== 'HEAD' && status >= 200 && status !== 204 && status !== 304;
}

/** Sends the response head and returns where its body goes, scrubbed. */
export function scrubbedSink(credentials: CredentialBroker, res: ResponseOut, r: ScrubbedResponse): BodySink {
  const { statusCode } = r;
  // Headers are scrubbed on every response (HEAD, 204 and 304 included); bodies when present.
  const withBody = responseHasBody(r.method, statusCode);
  const scrub = credentials.scrubResponse({
    host: r.host,
    status: statusCode,
    headers: r.headers,
    hasBody: withBody,
    onScrub: r.onScrub,
    echoes: r.echoes,
  });
  if (!scrub) {
    res.writeHead(statusCode, r.headers);
    return res;
  }
  if (scrub.refuse) {
    r.unreadable(scrub.refuse);
    return discard();
  }
  const headers = scrub.headers;
  const declared = Number(headers['content-length']);
  if (withBody && scrub.scrubWhole && declared <= WHOLE_BODY_LIMIT) {
    // Small body: scrub it whole and send it with its exact length in one write, not chunked
    // (which would cost an extra TLS record and syscall per response).
    return wholeBody((body) => {
      const clean = scrub.scrubWhole!(body);
      // The scrubber's own copy of the headers: its length is set in place.
      headers['content-length'] = String(clean.length);
      res.writeHead(statusCode, headers);
      res.end(clean);
    });
  }
  if (withBody && scrub.scrubChunks) {
    // The length may change: it goes chunked.
    delete headers['content-length'];
    res.writeHead(statusCode, headers);
    return scrubbingSink(res, scrub.scrubChunks);
  }
  const scrubber = scrub.bodyTransform;
  if (scrubber) {
    delete headers['content-length'];
    scrubber.on('error', (err) => r.unreadable(err.message));
    // The head goes out with the first decoded bytes, so a body refused early is a 502.
    pipeInto(scrubber, res, () => res.writeHead(statusCode, headers));
    return scrubber;
  }
  res.writeHead(statusCode, headers);
  return res;
}

/** A sink that gathers a body of known length and hands it over once complete. */
function wholeBody(onComplete: (body: Buffer) => void): BodySink {
  const chunks: Buffer[] = [];
  return {
    write(chunk) {
      chunks.push(chunk);
      return true;
    },
    end(chunk) {
      if (chunk) chunks.push(chunk);
      onComplete(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
    },
    cork() {},
    uncork() {},
    once() {},
    on() {},
  };
}

/** Passes a body on to the client with echoed secrets replaced, chunk by chunk. */
function scrubbingSink(res: ResponseOut, scrubber: ChunkScrubber): BodySink {
  return {
    write: (chunk) => {
      let more = true;
      for (const piece of scrubber.push(chunk)) more = res.write(piece);
      return more;
    },
    end: (chunk) => {
      const pieces = chunk ? scrubber.push(chunk) : [];
      pieces.push(scrubber.flush());
      res.end(pieces.length === 1 ? pieces[0] : Buffer.concat(pieces));
    },
    cork: () => res.cork(),
    uncork: () => res.uncork(),
    get writableLength() {
      return res.writableLength;
    },
    once: (event, listener) => res.once(event, listener),
    on: (event, listener) => res.on(event, listener),
  };
}

/** A response body that is not passed on: the upstream connection is closed, not read. */
export function discard(): BodySink {
  return { ...wholeBody(() => {}), discard: true };
}

/**
 * Streams a scrubbed body into the response with backpressure (the response need not be a
 * Writable); `writeHead` runs before the first byte (or the end).
 */
function pipeInto(source: Readable, res: ResponseOut, writeHead: () => void): void {
  source.on('data', (chunk: Buffer) => {
    if (!res.headersSent) writeHead();
    if (res.write(chunk)) return;
    source.pause();
    res.once('drain', () => source.resume());
  });
  source.once('end', () => {
    if (!res.headersSent) writeHead();
    res.end();
  });
  res.once('close', () => source.destroy());
}
