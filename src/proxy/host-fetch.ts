// HTTPS requests the proxy makes for itself (a GitHub App's token endpoint), dialled through the
// same Upstream as every session request: --resolve overrides, --upstream-ca roots and the
// destination guard apply alike, so a token endpoint is reached exactly as a session's request to
// that host would be.
import https from 'node:https';
import type { HostFetch, HostRequest, HostResponse } from '../credentials/minting.js';
import type { Upstream } from './upstream.js';

const MAX_BODY_BYTES = 256 * 1024;
const TIMEOUT_MS = 20_000;

export function hostFetch(upstream: () => Upstream): HostFetch {
  return (request: HostRequest) =>
    new Promise<HostResponse>((resolve, reject) => {
      const url = new URL(request.url);
      if (url.protocol !== 'https:') {
        reject(new Error(`${url.origin} is not https`));
        return;
      }
      const port = url.port ? Number(url.port) : 443;
      const req = https.request({
        method: request.method,
        host: url.hostname,
        port,
        path: url.pathname + url.search,
        headers: { ...request.headers, ...(request.body !== undefined ? { 'content-length': String(Buffer.byteLength(request.body)) } : {}) },
        timeout: TIMEOUT_MS,
        // The TLS connection is Upstream's: checked name, checked address, the proxy's roots.
        createConnection: (_options: unknown, done: (err: Error | null, socket?: import('node:net').Socket) => void) => {
          upstream().connectTls(url.hostname, port).then(
            (socket) => done(null, socket),
            (err: Error) => done(err),
          );
          return undefined;
        },
      } as https.RequestOptions);
      req.on('timeout', () => req.destroy(new Error(`no answer from ${url.host} in ${TIMEOUT_MS / 1000} s`)));
      req.on('error', reject);
      req.on('response', (res) => {
        const parts: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_BODY_BYTES) {
            res.destroy(new Error(`answer from ${url.host} is over ${MAX_BODY_BYTES} bytes`));
            return;
          }
          parts.push(chunk);
        });
        res.on('error', reject);
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts).toString('utf8') }));
      });
      req.end(request.body);
    });
}
