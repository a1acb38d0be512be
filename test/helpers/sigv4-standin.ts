// An AWS stand-in (HTTPS on loopback, as S3, STS and Bedrock endpoints) with its own SigV4
// verifier, written here from AWS's description of Signature Version 4 (canonical request,
// string to sign, HMAC key chain) with node:crypto only: it shares no code with the signer the
// proxy uses. It answers like AWS: SignatureDoesNotMatch, InvalidAccessKeyId,
// RequestTimeTooSkewed. `signV4` is the same algorithm on the client side, for hand-made requests.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type http from 'node:http';
import { startHttpsUpstream } from './servers.js';
import type { TestPki, TestUpstream } from './servers.js';

export interface AwsKey {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
}

const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');
const hmac = (key: Buffer | string, data: string) => createHmac('sha256', key).update(data).digest();

/** RFC 3986 unreserved characters stay; everything else is %XX (upper case), as SigV4 wants. */
export function uriEncode(text: string, encodeSlash = true): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    const ch = String.fromCharCode(byte);
    if (/[A-Za-z0-9\-_.~]/.test(ch) || (ch === '/' && !encodeSlash)) out += ch;
    else out += '%' + byte.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

function canonicalUri(rawPath: string, service: string): string {
  const segments = rawPath.split('/').map((seg) => uriEncode(decodeURIComponent(seg)));
  // Every service but S3 encodes the (already encoded) path once more.
  return service === 's3' ? segments.join('/') : segments.map((seg) => uriEncode(seg)).join('/');
}

function canonicalQuery(rawQuery: string): string {
  const pairs = rawQuery
    .split('&')
    .filter((p) => p !== '')
    .map((p) => {
      const eq = p.indexOf('=');
      const k = decodeURIComponent(eq === -1 ? p : p.slice(0, eq));
      const v = eq === -1 ? '' : decodeURIComponent(p.slice(eq + 1));
      return [uriEncode(k), uriEncode(v)] as const;
    })
    .filter(([k]) => k !== 'X-Amz-Signature');
  pairs.sort((a, b) => (a[0] === b[0] ? (a[1] < b[1] ? -1 : 1) : a[0] < b[0] ? -1 : 1));
  return pairs.map(([k, v]) => `${k}=${v}`).join('&');
}

function signingKey(secret: string, date: string, region: string, service: string): Buffer {
  return hmac(hmac(hmac(hmac(`AWS4${secret}`, date), region), service), 'aws4_request');
}

export interface SignatureInput {
  readonly method: string;
  /** Path and query as sent on the wire. */
  readonly rawPath: string;
  /** Lower-case name → values as received. */
  readonly headers: Readonly<Record<string, readonly string[]>>;
  readonly signedHeaders: readonly string[];
  readonly payloadHash: string;
  readonly amzDate: string;
  readonly region: string;
  readonly service: string;
}

export function signatureOf(input: SignatureInput, secret: string): string {
  const q = input.rawPath.indexOf('?');
  const path = q === -1 ? input.rawPath : input.rawPath.slice(0, q);
  const query = q === -1 ? '' : input.rawPath.slice(q + 1);
  const canonicalHeaders = input.signedHeaders.map((name) => `${name}:${(input.headers[name] ?? []).map((v) => v.trim().replace(/\s+/g, ' ')).join(',')}\n`).join('');
  const canonicalRequest = [input.method, canonicalUri(path, input.service), canonicalQuery(query), canonicalHeaders, input.signedHeaders.join(';'), input.payloadHash].join('\n');
  const date = input.amzDate.slice(0, 8);
  const scope = `${date}/${input.region}/${input.service}/aws4_request`;
  const stringToSign = ['AWS4-HMAC-SHA256', input.amzDate, scope, sha256(canonicalRequest)].join('\n');
  return hmac(signingKey(secret, date, input.region, input.service), stringToSign).toString('hex');
}

/** Signs a hand-made request (the client side, for crafted requests): returns the headers to add. */
export function signV4(opts: {
  method: string;
  host: string;
  rawPath: string;
  headers?: Record<string, string>;
  payloadHash: string;
  region: string;
  service: string;
  key: AwsKey;
  amzDate?: string;
}): Record<string, string> {
  const amzDate = opts.amzDate ?? new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
  const headers: Record<string, string> = { ...(opts.headers ?? {}), host: opts.host, 'x-amz-date': amzDate, 'x-amz-content-sha256': opts.payloadHash };
  const signedHeaders = Object.keys(headers).map((h) => h.toLowerCase()).sort();
  const lower: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(headers)) lower[k.toLowerCase()] = [v];
  const signature = signatureOf({ method: opts.method, rawPath: opts.rawPath, headers: lower, signedHeaders, payloadHash: opts.payloadHash, amzDate, region: opts.region, service: opts.service }, opts.key.secretAccessKey);
  const { host: _host, ...rest } = headers;
  return {
    ...rest,
    authorization: `AWS4-HMAC-SHA256 Credential=${opts.key.accessKeyId}/${amzDate.slice(0, 8)}/${opts.region}/${opts.service}/aws4_request, SignedHeaders=${signedHeaders.join(';')}, Signature=${signature}`,
  };
}

export interface Verdict {
  readonly ok: boolean;
  readonly code?: string;
  readonly accessKeyId?: string;
  readonly region?: string;
  readonly service?: string;
  readonly payload?: string;
}

/** Checks a request's SigV4 Authorization as AWS would; `expect` is the host's region and service. */
export function verifySigV4(req: { method: string; rawPath: string; rawHeaders: readonly string[] }, body: Buffer, keys: readonly AwsKey[], expected: { region: string; service: string }, now = Date.now()): Verdict {
  const headers: Record<string, string[]> = {};
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) (headers[req.rawHeaders[i]!.toLowerCase()] ??= []).push(req.rawHeaders[i + 1]!);
  const auths = headers.authorization ?? [];
  if (auths.length !== 1) return { ok: false, code: auths.length === 0 ? 'MissingAuthenticationToken' : 'InvalidRequest' };
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/.exec(auths[0]!);
  if (!m) return { ok: false, code: 'IncompleteSignature' };
  const [, accessKeyId, date, region, service, signed, signature] = m;
  const key = keys.find((k) => k.accessKeyId === accessKeyId);
  if (!key) return { ok: false, code: 'InvalidAccessKeyId', accessKeyId };
  if (region !== expected.region || service !== expected.service) return { ok: false, code: 'SignatureDoesNotMatch', accessKeyId };
  const amzDate = headers['x-amz-date']?.[0] ?? '';
  const at = Date.parse(amzDate.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, '$1-$2-$3T$4:$5:$6Z'));
  if (!Number.isFinite(at) || amzDate.slice(0, 8) !== date) return { ok: false, code: 'IncompleteSignature', accessKeyId };
  if (Math.abs(at - now) > 5 * 60_000) return { ok: false, code: 'RequestTimeTooSkewed', accessKeyId };
  const signedHeaders = signed!.split(';');
  if (!signedHeaders.includes('host')) return { ok: false, code: 'SignatureDoesNotMatch', accessKeyId };
  if (key.sessionToken && (headers['x-amz-security-token']?.[0] !== key.sessionToken || !signedHeaders.includes('x-amz-security-token'))) {
    return { ok: false, code: 'InvalidToken', accessKeyId };
  }
  const declared = headers['x-amz-content-sha256']?.[0];
  let payloadHash: string;
  if (declared === undefined) {
    if (service === 's3') return { ok: false, code: 'MissingContentSHA256', accessKeyId };
    payloadHash = sha256(body);
  } else if (declared === 'UNSIGNED-PAYLOAD' || declared === 'STREAMING-UNSIGNED-PAYLOAD-TRAILER') {
    payloadHash = declared;
  } else if (/^[0-9a-f]{64}$/.test(declared)) {
    if (declared !== sha256(body)) return { ok: false, code: 'XAmzContentSHA256Mismatch', accessKeyId };
    payloadHash = declared;
  } else {
    return { ok: false, code: 'InvalidArgument', accessKeyId };
  }
  const expectedSig = signatureOf({ method: req.method, rawPath: req.rawPath, headers, signedHeaders, payloadHash, amzDate, region: region!, service: service! }, key.secretAccessKey);
  if (!timingSafeEqual(Buffer.from(expectedSig), Buffer.from(signature!))) return { ok: false, code: 'SignatureDoesNotMatch', accessKeyId };
  return { ok: true, accessKeyId, region, service, payload: declared ?? 'body-hash' };
}

/** The content of an aws-chunked body (chunk-size[;ext]\r\n data \r\n ... 0\r\n trailers \r\n). */
export function decodeAwsChunked(body: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = body.indexOf('\r\n', at);
    if (eol === -1) throw new Error('aws-chunked: no chunk header');
    const size = parseInt(body.subarray(at, eol).toString('latin1').split(';')[0]!, 16);
    if (!Number.isFinite(size)) throw new Error('aws-chunked: bad size');
    if (size === 0) return Buffer.concat(parts);
    parts.push(body.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
}

export interface AwsStandIn {
  readonly upstream: TestUpstream;
  readonly objects: Map<string, Buffer>;
  /** Every request: host, path, verdict, Authorization as received. */
  readonly seen: { host: string; method: string; path: string; verdict: Verdict; authorization: string[]; securityToken?: string; range?: string }[];
  /** Answer every request with RequestTimeTooSkewed and a Date this far off. */
  skewMs: number;
  close(): Promise<void>;
}

/** host → region/service, as AWS's endpoints map them. */
export function endpointOf(host: string): { region: string; service: string } {
  if (host.startsWith('bedrock-runtime.')) return { region: host.split('.')[1]!, service: 'bedrock' };
  if (host === 'sts.amazonaws.com') return { region: 'us-east-1', service: 'sts' };
  if (host.startsWith('sts.')) return { region: host.split('.')[1]!, service: 'sts' };
  const s3 = /(?:^|\.)s3\.([a-z0-9-]+)\.amazonaws\.com$/.exec(host);
  if (s3) return { region: s3[1]!, service: 's3' };
  return { region: 'unknown', service: 'unknown' };
}

function xmlError(res: http.ServerResponse, status: number, code: string, extraHeaders: Record<string, string> = {}): void {
  const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${code}</Message></Error>`;
  res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body), ...extraHeaders });
  res.end(body);
}

export async function startAwsStandIn(opts: { pki: TestPki; names: readonly string[]; keys: readonly AwsKey[] }): Promise<AwsStandIn> {
  const objects = new Map<string, Buffer>();
  const seen: AwsStandIn['seen'] = [];
  const standIn: AwsStandIn = { upstream: undefined as unknown as TestUpstream, objects, seen, skewMs: 0, close: () => standIn.upstream.close() };

  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const host = String(req.headers.host ?? '').replace(/:443$/, '');
      const rawPath = req.url ?? '/';
      const expected = endpointOf(host);
      const verdict = verifySigV4({ method: req.method ?? 'GET', rawPath, rawHeaders: req.rawHeaders }, body, opts.keys, expected, Date.now() - standIn.skewMs);
      const authorization = req.rawHeaders.filter((_, i) => i % 2 === 1 && req.rawHeaders[i - 1]!.toLowerCase() === 'authorization');
      seen.push({ host, method: req.method ?? '', path: rawPath, verdict, authorization, securityToken: req.headers['x-amz-security-token'] as string | undefined, range: req.headers.range });
      if (standIn.skewMs !== 0) {
        return xmlError(res, 403, 'RequestTimeTooSkewed', { date: new Date(Date.now() + standIn.skewMs).toUTCString() });
      }
      if (!verdict.ok) return xmlError(res, 403, verdict.code ?? 'AccessDenied');
      const path = rawPath.split('?')[0]!;
      if (expected.service === 's3') {
        const key = decodeURIComponent(path);
        if (key === '/echo-headers') {
          // Echoes the request as it arrived, the way a debugging endpoint or an error page might.
          const text = JSON.stringify({ headers: req.headers });
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
          return res.end(text);
        }
        if (req.method === 'PUT') {
          const content = req.headers['content-encoding']?.includes('aws-chunked') || req.headers['x-amz-content-sha256'] === 'STREAMING-UNSIGNED-PAYLOAD-TRAILER' ? decodeAwsChunked(body) : body;
          objects.set(key, content);
          res.writeHead(200, { etag: `"${createHash('md5').update(content).digest('hex')}"`, 'content-length': 0 });
          return res.end();
        }
        const object = objects.get(key);
        if (!object) return xmlError(res, 404, 'NoSuchKey');
        const range = /^bytes=(\d+)-(\d*)$/.exec(String(req.headers.range ?? ''));
        if (range && req.method === 'GET') {
          const start = Number(range[1]);
          const end = Math.min(range[2] ? Number(range[2]) : object.length - 1, object.length - 1);
          const slice = object.subarray(start, end + 1);
          res.writeHead(206, { 'content-type': 'application/octet-stream', 'content-length': slice.length, 'content-range': `bytes ${start}-${end}/${object.length}`, etag: `"${createHash('md5').update(object).digest('hex')}"` });
          return res.end(slice);
        }
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': object.length, etag: `"${createHash('md5').update(object).digest('hex')}"`, 'last-modified': new Date().toUTCString() });
        return res.end(req.method === 'HEAD' ? undefined : object);
      }
      if (expected.service === 'sts') {
        // GetCallerIdentity, echoing the key id it was signed with (as a UserId would name a user).
        const text = `<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult><Arn>arn:aws:iam::123456789012:user/airlock-test</Arn><UserId>${verdict.accessKeyId}</UserId><Account>123456789012</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>00000000-0000-0000-0000-000000000000</RequestId></ResponseMetadata></GetCallerIdentityResponse>`;
        res.writeHead(200, { 'content-type': 'text/xml', 'content-length': Buffer.byteLength(text) });
        return res.end(text);
      }
      if (expected.service === 'bedrock' && req.method === 'POST' && /^\/model\/[^/]+\/invoke$/.test(path)) {
        const asked = JSON.parse(body.toString('utf8') || '{}') as { messages?: { content?: string }[] };
        const text = JSON.stringify({ id: 'msg_standin', type: 'message', role: 'assistant', content: [{ type: 'text', text: `bedrock stand-in heard: ${asked.messages?.[0]?.content ?? ''}` }], model: decodeURIComponent(path.split('/')[2]!) });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
        return res.end(text);
      }
      xmlError(res, 400, 'InvalidAction');
    });
  };
  (standIn as { upstream: TestUpstream }).upstream = await startHttpsUpstream({ pki: opts.pki, names: opts.names, handler });
  return standIn;
}
