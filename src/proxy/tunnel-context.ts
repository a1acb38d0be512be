// What a request inside an inspected tunnel carries about the tunnel. Below both the server, which
// creates it on CONNECT, and the request paths (forward, websocket) that check against it.
import type { ProxySession } from './context.js';
import type { Authority } from './target.js';

/** Where a request inside an inspected tunnel belongs. */
export interface TunnelContext {
  readonly session: ProxySession;
  readonly connect: Authority;
  sni: string | null;
  /** The last Host header value found to match `connect` (a cache, not a decision). */
  matchedHostHeader?: string;
}
