// The one entrance for requests (plain, inside a tunnel, upgrades): where a request goes, with the
// Host header and (in a tunnel) the CONNECT host and SNI required to agree; then, in this order
// on every path, the session's limits, the policy's decision and (by the caller) the swap.
import type { Decision, DenyReason } from '../policy/index.js';
import type { ProxySession } from './context.js';
import type { Exchange } from './exchange.js';
import type { RequestHead } from './http1/types.js';
import type { TunnelContext } from './tunnel-context.js';
import { methodOverrides, normalisePath, pathOverrides, parseAbsoluteUri, parseAuthority } from './target.js';
import type { Authority } from './target.js';

/** A request as it arrives, with where it arrived. */
export interface Incoming {
  readonly req: RequestHead;
  readonly session: ProxySession;
  readonly scheme: 'http' | 'https';
  /** Set for requests inside an inspected tunnel. */
  readonly tunnel?: TunnelContext;
}

export interface TargetRefusal {
  readonly status: number;
  readonly reason: DenyReason;
  readonly message: string;
}

export interface CheckedTarget extends Authority {
  /** Path (no query, dot segments resolved) that rules saw. */
  readonly path: string;
  /** The path (no query) as the client sent it. */
  readonly rawPath: string;
  /** Path and query sent upstream: the one that was checked. */
  readonly forward: string;
}

function refusal(status: number, reason: DenyReason, message: string): TargetRefusal {
  return { status, reason, message };
}

function sameAuthority(a: Authority, b: Authority): boolean {
  return a.host === b.host && a.port === b.port;
}

/** Where a request is going, or why it cannot be served. */
export function checkTarget(x: Incoming): CheckedTarget | TargetRefusal {
  const { req, tunnel } = x;
  const url = req.url ?? '';
  let authority: Authority;
  let pathWithQuery: string;
  if (tunnel) {
    authority = tunnel.connect;
    pathWithQuery = url;
    if (!url.startsWith('/')) {
      const absolute = parseAbsoluteUri(url);
      if (!absolute || (absolute.scheme !== 'https' && absolute.scheme !== 'wss')) {
        return refusal(400, 'bad_request', 'Airlock: malformed request target inside the tunnel.');
      }
      if (!sameAuthority(absolute, authority)) {
        return refusal(403, 'host_mismatch', `request for ${absolute.host}:${absolute.port} inside a tunnel to ${authority.host}:${authority.port}`);
      }
      pathWithQuery = absolute.pathWithQuery;
    }
    if (tunnel.sni !== null && tunnel.sni !== authority.host) {
      return refusal(403, 'host_mismatch', `TLS server name ${tunnel.sni} differs from the CONNECT host ${authority.host}`);
    }
  } else {
    const absolute = parseAbsoluteUri(url);
    if (!absolute || (absolute.scheme !== 'http' && absolute.scheme !== 'ws')) {
      const why =
        absolute?.scheme === 'https' || absolute?.scheme === 'wss'
          ? 'https:// URLs must be requested through CONNECT'
          : 'the request target is not an absolute http:// URI (is this client configured to use the proxy?)';
      return refusal(400, 'bad_request', `Airlock: bad proxy request: ${why}.`);
    }
    authority = absolute;
    pathWithQuery = absolute.pathWithQuery;
  }
  let hostHeaders = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i]!.toLowerCase() === 'host') hostHeaders++;
  if (hostHeaders > 1) return refusal(400, 'bad_request', 'Airlock: more than one Host header.');
  const hostHeader = req.headers.host;
  if (hostHeader === undefined) {
    if (tunnel) return refusal(400, 'bad_request', 'Airlock: request without a Host header.');
  } else if (hostHeader !== tunnel?.matchedHostHeader) {
    const host = parseAuthority(hostHeader, x.scheme === 'https' ? 443 : 80);
    if (!host || !sameAuthority(host, authority)) {
      return refusal(403, 'host_mismatch', `Host header ${JSON.stringify(hostHeader)} does not match the target ${authority.host}:${authority.port}`);
    }
    // Keep-alive requests in a tunnel repeat the same Host: check each spelling once.
    if (tunnel) tunnel.matchedHostHeader = hostHeader;
  }
  const path = normalisePath(pathWithQuery);
  if (!path) return refusal(400, 'bad_request', 'Airlock: malformed request path.');
  return { host: authority.host, port: authority.port, path: path.path, rawPath: path.raw, forward: path.forward };
}

/**
 * Admits a request: its target (audited as asked even when refused), the session's limits, then
 * the decision. Returns where it goes and what was decided, or null when it was refused (answered
 * and audited by the exchange).
 */
export function enter(
  ex: Exchange,
  x: Incoming,
  limits: { readonly connection: boolean; readonly upload?: number },
): { target: CheckedTarget; decision: Decision } | null {
  const target = checkTarget(x);
  const url = x.req.url ?? '';
  if ('status' in target) {
    const asked = x.tunnel ? null : parseAbsoluteUri(url);
    if (x.tunnel) ex.target(x.tunnel.connect.host, x.tunnel.connect.port, url);
    else if (asked) ex.target(asked.host, asked.port, asked.pathWithQuery);
    else ex.target('-', 0, url.slice(0, 2048));
  } else {
    ex.target(target.host, target.port, target.forward);
  }
  if (!ex.withinLimits(limits)) return null;
  if ('status' in target) {
    ex.refuse(target.status, target.reason, target.message);
    return null;
  }
  const decision = ex.decide(
    {
      phase: 'request',
      scheme: x.scheme,
      host: target.host,
      port: target.port,
      method: x.req.method ?? 'GET',
      path: target.path,
      rawPath: target.rawPath,
      methodOverrides: methodOverrides(x.req.rawHeaders, target.forward),
      pathOverrides: pathOverrides(x.req.rawHeaders),
    },
    // A refused path is audited as it was asked for (the query is the same either way):
    // "/v1/a/%2e%2e/b" says more about the attempt than the "/v1/b" it resolves to.
    target.rawPath + target.forward.slice(target.path.length),
  );
  return decision ? { target, decision } : null;
}
