// Header plumbing between client and upstream: hop-by-hop headers stay on their hop.

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  // Node's server already answered 100-continue; the upstream gets the body without asking.
  'expect',
]);

function connectionTokens(value: string | undefined): Set<string> | null {
  if (!value) return null;
  // The usual values name no header: nothing to split (this runs for every request and response).
  const plain = value.length <= 10 ? value.toLowerCase() : '';
  if (plain === 'keep-alive' || plain === 'close') return null;
  const tokens = value
    .split(',')
    .map((t) => t.trim().toLowerCase())
    .filter((t) => t !== '' && t !== 'close' && t !== 'keep-alive');
  return tokens.length > 0 ? new Set(tokens) : null;
}

/** Request headers for upstream as a flat [name, value, ...] list, order and case preserved. */
export function forwardRequestHeaders(rawHeaders: readonly string[], connection: string | undefined): string[] {
  const listed = connectionTokens(connection);
  const out: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || listed?.has(lower)) continue;
    out.push(name, rawHeaders[i + 1]!);
  }
  return out;
}

/** Response headers for the client, hop-by-hop removed. */
export function forwardResponseHeaders(
  headers: Record<string, string | string[] | undefined>,
): Record<string, string | string[]> {
  const connection = headers.connection;
  const listed = connectionTokens(Array.isArray(connection) ? connection.join(',') : connection);
  // No prototype: a header named __proto__ is just a header.
  const out: Record<string, string | string[]> = Object.create(null);
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || HOP_BY_HOP.has(name) || listed?.has(name)) continue;
    out[name] = value;
  }
  return out;
}

/** Every value of header `name` (lower case) in a raw [name, value, ...] list, joined with ", "; undefined when absent. */
export function rawHeader(rawHeaders: readonly string[], name: string): string | undefined {
  let found: string | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() === name) found = found === undefined ? rawHeaders[i + 1]! : `${found}, ${rawHeaders[i + 1]!}`;
  }
  return found;
}

/**
 * A request body's Content-Encoding unless it is exactly `identity` (all its headers joined, so a
 * second one cannot hide a coding): a body the proxy must read has to come uncoded.
 */
export function bodyCoding(rawHeaders: readonly string[]): string | undefined {
  const value = rawHeader(rawHeaders, 'content-encoding');
  if (value === undefined) return undefined;
  return value.trim().toLowerCase() === 'identity' ? undefined : value;
}
