// The shapes the HTTP/1 wing shares with what forwards through it: a request head as read, where
// a response body goes, and the response a request is answered on. Node's IncomingMessage and
// ServerResponse fit them, and so do the tunnel's own TunnelRequest and TunnelResponse.
import type { Readable } from 'node:stream';
import type { HeadFields } from './request-head.js';

/** A request the upstream client sends. */
export interface UpstreamCall {
  readonly secure: boolean;
  readonly host: string;
  readonly port: number;
  readonly method: string;
  /** Path and query, already checked. */
  readonly path: string;
  /** Flat [name, value, ...] list; sent as given (Host added when absent). */
  readonly headers: readonly string[];
  /** Request body: with a Content-Length header it is sent as is, otherwise chunked. */
  readonly body: Readable | null;
  /** Called per body chunk before it is sent; throwing stops the request with that error. */
  readonly onBodyChunk?: (bytes: number) => void;
  /** Told (in a microtask) why the request failed; spares a promise per request (see done). */
  readonly onFail?: (err: Error) => void;
}

export interface ResponseHead {
  readonly statusCode: number;
  /** Lower-case names; repeated headers as arrays. */
  readonly headers: Record<string, string | string[]>;
}

/**
 * Where a response body goes. A Writable (such as http.ServerResponse) is one; so is any object
 * with these few methods, which spares a stream per response on the hot path.
 */
export interface BodySink {
  /** False asks the upstream to pause until 'drain'. */
  write(chunk: Buffer): boolean;
  end(chunk?: Buffer): unknown;
  cork(): void;
  uncork(): void;
  /** Bytes waiting to be written; when absent, a false write() pauses at once. */
  readonly writableLength?: number;
  /** 'close': the sink is done with, finished or destroyed (a sink that never says so may ignore it). */
  once(event: 'drain' | 'close', listener: () => void): unknown;
  on(event: 'error', listener: (err: Error) => void): unknown;
  /** The body is not wanted: the connection is closed instead of read to the end. */
  readonly discard?: boolean;
}

/** The factory sees the response head and returns where the body goes. */
export type SinkFactory = (head: ResponseHead) => BodySink;

/** What forwarding reads of a request head (Node's IncomingMessage, or the tunnel's TunnelRequest). */
export interface RequestHead {
  readonly method?: string;
  readonly url?: string;
  readonly rawHeaders: string[];
  readonly headers: HeadFields;
  readonly socket: { readonly bytesWritten: number };
}

/** What forwarding does with a response: the part of Node's ServerResponse it uses. */
export interface ResponseOut extends BodySink {
  readonly headersSent: boolean;
  readonly statusCode: number;
  readonly destroyed: boolean;
  readonly writableFinished: boolean;
  readonly writableLength: number;
  /** False: the connection closes after this response. */
  shouldKeepAlive: boolean;
  writeHead(status: number, headers: Record<string, string | string[] | number>): unknown;
  end(chunk?: Buffer | string): unknown;
  destroy(): unknown;
  on(event: 'close', listener: () => void): unknown;
  on(event: 'error', listener: (err: Error) => void): unknown;
  once(event: 'close' | 'drain', listener: () => void): unknown;
}
