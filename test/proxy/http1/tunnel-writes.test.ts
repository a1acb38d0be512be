// How a small answer leaves the proxy on a kept-alive inspected tunnel: its head and body in one
// write, so one TLS record and one segment. Sent apart they cost a second record and segment,
// and on a socket without TCP_NODELAY the second waits for the client's delayed ACK (tens of
// milliseconds per request at c=1). Counted on the wire, through the real proxy with a credential
// swapped and the response scrubbed, and on the response writer itself over a real TLS socket;
// and the tunnel's keep-alive timeout, now one timer per idle period, still counts from the last
// answer.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Duplex } from 'node:stream';
import net from 'node:net';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { credentialsFactory } from '../../../src/credentials/sources.js';
import { TunnelResponse } from '../../../src/proxy/http1/tunnel-response.js';
import { createTestPki, rmTmp, startAirlock, startHttpsUpstream } from '../../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../../helpers/servers.js';
import { rawConnect } from '../../helpers/clients.js';
import { secretLeaks } from '../../helpers/secret-leaks.js';

const SECRET = 'tunnel-writes-secret-4b1d9c07e2';
const POLICY = `
version: 1
name: tunnel-writes
allow:
  - host: api.small.test
credentials:
  - name: small
    env: [SMALL_TOKEN]
    secret: { env: AIRLOCK_SMALL_SECRET }
    hosts: [api.small.test]
`;
const BODY = Buffer.alloc(1024, 'a');

let pki: TestPki;
let upstream: TestUpstream;
let airlock: AirlockHandle;
let bundle: string;
const authSeen: string[] = [];

beforeAll(async () => {
  pki = await createTestPki();
  upstream = await startHttpsUpstream({
    pki,
    names: ['api.small.test'],
    handler: (req, res) => {
      authSeen.push(String(req.headers.authorization));
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': BODY.length });
      res.end(BODY);
    },
  });
  airlock = await startAirlock({
    policy: POLICY,
    resolve: { 'api.small.test:443': upstream.port },
    upstreamCa: [pki.caPem],
    credentials: credentialsFactory({ AIRLOCK_SMALL_SECRET: SECRET }),
  });
  bundle = readFileSync(airlock.bundlePath, 'utf8');
});

afterAll(async () => {
  await airlock?.close();
  await upstream?.close();
  rmTmp(pki?.dir);
});

/** A TLS client inside a CONNECT tunnel that sees the TLS records the proxy sends (type, length). */
async function recordingTunnel(target: string): Promise<{ socket: tls.TLSSocket; records: { type: number; length: number }[] }> {
  const connect = await rawConnect({ proxyPort: airlock.port, target, proxyAuthorization: airlock.proxyAuthorization });
  expect(connect.status).toBe(200);
  const raw = connect.socket;
  const records: { type: number; length: number }[] = [];
  let pending = Buffer.alloc(0);
  // Between the raw socket and TLS, so every byte the proxy sends passes through JavaScript.
  const wire = new Duplex({
    read() {
      raw.resume();
    },
    write(chunk: Buffer, _encoding, done) {
      raw.write(chunk, done);
    },
    final(done) {
      raw.end();
      done();
    },
  });
  raw.on('data', (d: Buffer) => {
    pending = Buffer.concat([pending, d]);
    while (pending.length >= 5 && pending.length >= 5 + pending.readUInt16BE(3)) {
      records.push({ type: pending[0]!, length: pending.readUInt16BE(3) });
      pending = pending.subarray(5 + pending.readUInt16BE(3));
    }
    if (!wire.push(d)) raw.pause();
  });
  raw.on('end', () => wire.push(null));
  raw.on('close', () => wire.destroy());
  raw.resume();
  const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
    const s = tls.connect({ socket: wire, servername: target.replace(/:\d+$/, ''), ca: bundle, ALPNProtocols: ['http/1.1'] });
    s.once('secureConnect', () => resolve(s));
    s.once('error', reject);
  });
  return { socket, records };
}

/** Sends one request and resolves with everything read once `length` body bytes followed the head. */
function roundTrip(socket: tls.TLSSocket, request: string, length: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (d: Buffer) => {
      text += d.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end !== -1 && text.length - end - 4 >= length) {
        socket.off('data', onData);
        clearTimeout(timer);
        resolve(text);
      }
    };
    const timer = setTimeout(() => reject(new Error(`no whole answer in 5 s: ${JSON.stringify(text.slice(0, 200))}`)), 5_000);
    socket.on('data', onData);
    socket.write(request);
  });
}

describe('a small answer on a kept-alive tunnel', () => {
  it('leaves in one TLS record, request after request, with the credential swapped and the answer scrubbed', async () => {
    const { socket, records } = await recordingTunnel('api.small.test:443');
    try {
      const placeholder = airlock.session.credentials.sessionEnv.SMALL_TOKEN!;
      const request = `GET /small HTTP/1.1\r\nHost: api.small.test\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\nAuthorization: Bearer ${placeholder}\r\n\r\n`;
      // TLS 1.3 session tickets follow the handshake: let them arrive before counting.
      await new Promise((r) => setTimeout(r, 100));
      for (let i = 0; i < 3; i++) {
        const before = records.length;
        const text = await roundTrip(socket, request, BODY.length);
        expect(text).toMatch(/^HTTP\/1\.1 200 /);
        expect(text.slice(text.indexOf('\r\n\r\n') + 4)).toBe(BODY.toString('latin1'));
        const answer = records.slice(before);
        // 23: application data. One record holds the head and the 1 KiB body.
        expect(answer).toEqual([{ type: 23, length: expect.any(Number) }]);
      }
      expect(authSeen.slice(-3)).toEqual([`Bearer ${SECRET}`, `Bearer ${SECRET}`, `Bearer ${SECRET}`]);
      const lines = (await airlock.auditLines()).filter((l) => l.path === '/small');
      expect(lines.filter((l) => l.status === 200 && l.action === 'allow' && l.credentials?.includes('small'))).toHaveLength(3);
      expect(secretLeaks(JSON.stringify(lines), SECRET)).toEqual([]);
    } finally {
      socket.destroy();
    }
  });
});

describe('TunnelResponse', () => {
  it('writes the head and a small body to the socket in one call', async () => {
    const { key, cert } = await pki.issue(['writer.test']);
    const server = tls.createServer({ key, cert });
    const accepted = new Promise<tls.TLSSocket>((resolve) => server.once('secureConnection', resolve));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    const client = tls.connect({ port, host: '127.0.0.1', servername: 'writer.test', ca: pki.caPem });
    try {
      const socket = await accepted;
      const writes: Buffer[] = [];
      const write = socket.write.bind(socket) as (...args: unknown[]) => boolean;
      socket.write = ((chunk: Buffer | string, ...rest: unknown[]) => {
        writes.push(Buffer.from(chunk as Buffer));
        return write(chunk, ...rest);
      }) as typeof socket.write;
      let received = '';
      client.on('data', (d: Buffer) => (received += d.toString('latin1')));
      let done = false;
      const res = new TunnelResponse(socket, false, () => (done = true));
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': 5 });
      res.end(Buffer.from('hello'));
      expect(writes).toHaveLength(1);
      const text = writes[0]!.toString('latin1');
      expect(text).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
      expect(text.endsWith('\r\n\r\nhello')).toBe(true);
      for (let i = 0; i < 50 && !(done && received.endsWith('hello')); i++) await new Promise((r) => setTimeout(r, 10));
      expect(done).toBe(true);
      expect(received).toBe(text);
    } finally {
      client.destroy();
      server.close();
    }
  });
});

describe('the keep-alive timeout between requests', () => {
  it('counts from the last answer: a connection used again just before it fires is not closed under the client', async () => {
    const quick = await startAirlock({
      policy: POLICY,
      resolve: { 'api.small.test:443': upstream.port },
      upstreamCa: [pki.caPem],
      credentials: credentialsFactory({ AIRLOCK_SMALL_SECRET: SECRET }),
      limits: { keepAliveTimeoutMs: 400, headersTimeoutMs: 2_000 },
    });
    const connect = await rawConnect({ proxyPort: quick.port, target: 'api.small.test:443', proxyAuthorization: quick.proxyAuthorization });
    const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ socket: connect.socket, servername: 'api.small.test', ca: readFileSync(quick.bundlePath, 'utf8') });
      s.once('secureConnect', () => resolve(s));
      s.once('error', reject);
    });
    let closedAt = 0;
    socket.once('close', () => (closedAt = performance.now()));
    try {
      const request = 'GET /small HTTP/1.1\r\nHost: api.small.test\r\n\r\n';
      // Each request comes 250 ms after the answer before it: within the 400 ms allowed, but the
      // timer armed at the first idle start fires while the connection is busy or freshly idle.
      let last = 0;
      for (let i = 0; i < 4; i++) {
        if (i > 0) await new Promise((r) => setTimeout(r, 250));
        const text = await roundTrip(socket, request, BODY.length);
        expect(text).toMatch(/^HTTP\/1\.1 200 /);
        last = performance.now();
      }
      expect(closedAt).toBe(0);
      for (let i = 0; i < 100 && closedAt === 0; i++) await new Promise((r) => setTimeout(r, 20));
      // Closed by the proxy once idle for the timeout, counted from the last answer.
      expect(closedAt).toBeGreaterThan(0);
      expect(closedAt - last).toBeGreaterThanOrEqual(380);
      expect(closedAt - last).toBeLessThan(1_500);
    } finally {
      socket.destroy();
      await quick.close();
    }
  });
});
