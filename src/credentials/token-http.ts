// The host side's own requests to token endpoints (Claude's OAuth refresh, Google's token
// endpoint): HTTPS only, the operator's upstream roots and --resolve overrides (the same the proxy
// dials with), a deadline and a cap on the answer. Errors name the endpoint and what went wrong,
// never a request or response body (either may hold a token).
import https from 'node:https';

export interface TokenTransport {
  /** Roots for verifying the token endpoint's certificate; Node's defaults when absent. */
  readonly ca?: readonly string[];
  /** "host:port" → where to dial instead (the operator's --resolve). */
  readonly resolve?: ReadonlyMap<string, { readonly address: string; readonly port: number }>;
  /** Whole-request deadline (default 20 s). */
  readonly timeoutMs?: number;
}

export interface TokenResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
}

/** A token endpoint that did not answer usably: what happened, without any body. */
export class TokenEndpointError extends Error {
  constructor(
    message: string,
    /** slow (timeout), unreachable (connect/TLS), garbage (too large). */
    readonly kind: 'slow' | 'unreachable' | 'garbage',
  ) {
    super(message);
  }
}

const MAX_ANSWER_BYTES = 256 * 1024;

/** One HTTPS request to a token endpoint; resolves with any status, rejects on transport failures. */
export function tokenRequest(
  url: string,
  init: { readonly method?: string; readonly headers?: Readonly<Record<string, string>>; readonly body?: string | Buffer },
  t: TokenTransport,
): Promise<TokenResponse> {
  const u = new URL(url);
  if (u.protocol !== 'https:') return Promise.reject(new TokenEndpointError(`token endpoint ${u.host} is not https`, 'unreachable'));
  const port = Number(u.port || 443);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const override = t.resolve?.get(`${host.toLowerCase()}:${port}`);
  const timeoutMs = t.timeoutMs ?? 20_000;
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: override?.address ?? host,
      port: override?.port ?? port,
      servername: host,
      method: init.method ?? 'POST',
      path: `${u.pathname}${u.search}`,
      headers: { host: u.host, ...init.headers, ...(init.body !== undefined ? { 'content-length': String(Buffer.byteLength(init.body)) } : {}) },
      ca: t.ca ? [...t.ca] : undefined,
      agent: false,
    });
    const timer = setTimeout(() => req.destroy(new TokenEndpointError(`token endpoint ${u.host} did not answer within ${timeoutMs} ms`, 'slow')), timeoutMs);
    req.on('error', (err: Error & { code?: string }) => {
      clearTimeout(timer);
      reject(err instanceof TokenEndpointError ? err : new TokenEndpointError(`token endpoint ${u.host} unreachable (${err.code ?? err.message})`, 'unreachable'));
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_ANSWER_BYTES) req.destroy(new TokenEndpointError(`token endpoint ${u.host} answered more than ${MAX_ANSWER_BYTES} bytes`, 'garbage'));
        else chunks.push(c);
      });
      res.on('end', () => {
        clearTimeout(timer);
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
        resolve({ status: res.statusCode ?? 0, headers, body: Buffer.concat(chunks) });
      });
      res.on('error', () => {});
    });
    req.end(init.body);
  });
}

/**
 * A fetch() over tokenRequest, for libraries that take a fetch implementation (gaxios, under
 * google-auth-library): their token requests then go where the proxy's would.
 */
export function fetchOver(t: TokenTransport): typeof fetch {
  return (async (input: string | URL | Request, init?: RequestInit) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const headers: Record<string, string> = {};
    new Headers(init?.headers).forEach((v, k) => (headers[k] = v));
    const rawBody = init?.body;
    const body =
      rawBody === undefined || rawBody === null
        ? undefined
        : typeof rawBody === 'string'
          ? rawBody
          : rawBody instanceof URLSearchParams
            ? rawBody.toString()
            : Buffer.isBuffer(rawBody)
              ? rawBody
              : Buffer.from(await new Response(rawBody as BodyInit).arrayBuffer());
    if (rawBody instanceof URLSearchParams && !headers['content-type']) headers['content-type'] = 'application/x-www-form-urlencoded';
    const r = await tokenRequest(url, { method: init?.method ?? 'GET', headers, body }, t);
    return new Response(r.status === 204 || r.status === 304 ? null : new Uint8Array(r.body), { status: r.status, headers: r.headers });
  }) as typeof fetch;
}
