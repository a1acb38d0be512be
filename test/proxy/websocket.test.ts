// WebSockets through the real proxy: a ws client reaching a ws echo server through CONNECT (wss)
// and through a plain absolute-URI upgrade (ws), subprotocol negotiation, denials and audit.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import { createTestPki, rmTmp, startAirlock, startHttpUpstream, startHttpsUpstream } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream, UpgradeHandler } from '../helpers/servers.js';
import { TunnelAgent, rawExchange } from '../helpers/clients.js';

const POLICY = `
version: 1
name: ws-test
allow:
  - host: api.github.com
    paths: ["/socket", "/socket/*", "/needs-auth"]
`;

function echoServer(): { wss: WebSocketServer; onUpgrade: UpgradeHandler; upgrades: http.IncomingHttpHeaders[] } {
  const upgrades: http.IncomingHttpHeaders[] = [];
  const wss = new WebSocketServer({
    noServer: true,
    handleProtocols: (protocols) => (protocols.has('chat.v1') ? 'chat.v1' : false),
  });
  wss.on('connection', (socket) => {
    socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
  });
  const onUpgrade: UpgradeHandler = (req, socket, head) => {
    upgrades.push(req.headers);
    if (req.url === '/needs-auth') {
      socket.end('HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  };
  return { wss, onUpgrade, upgrades };
}

let pki: TestPki;
let secure: ReturnType<typeof echoServer>;
let plain: ReturnType<typeof echoServer>;
let tlsUpstream: TestUpstream;
let plainUpstream: TestUpstream;
let evil: TestUpstream;
let airlock: AirlockHandle;
let agent: TunnelAgent;

beforeAll(async () => {
  pki = await createTestPki();
  secure = echoServer();
  plain = echoServer();
  tlsUpstream = await startHttpsUpstream({ pki, names: ['api.github.com'], onUpgrade: secure.onUpgrade });
  plainUpstream = await startHttpUpstream({ onUpgrade: plain.onUpgrade });
  evil = await startHttpsUpstream({ pki, names: ['evil.example'], onUpgrade: secure.onUpgrade });
  airlock = await startAirlock({
    policy: POLICY,
    resolve: { 'api.github.com:443': tlsUpstream.port, 'api.github.com:80': plainUpstream.port, 'evil.example:443': evil.port },
    upstreamCa: [pki.caPem],
  });
  agent = new TunnelAgent({ proxyPort: airlock.port, proxyAuthorization: airlock.proxyAuthorization, ca: readFileSync(airlock.bundlePath, 'utf8') });
});

afterAll(async () => {
  agent?.destroy();
  await airlock?.close();
  secure?.wss.close();
  plain?.wss.close();
  await Promise.all([tlsUpstream?.close(), plainUpstream?.close(), evil?.close()]);
  rmTmp(pki?.dir);
});

function open(url: string, protocols: string[]): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, { agent, perMessageDeflate: false });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(Object.assign(new Error(`unexpected response ${res.statusCode}`), { status: res.statusCode })));
  });
}

function nextMessage(ws: WebSocket): Promise<{ data: Buffer; isBinary: boolean }> {
  return new Promise((resolve) => ws.once('message', (data, isBinary) => resolve({ data: data as Buffer, isBinary })));
}

describe('wss through CONNECT', () => {
  it('echoes text and binary messages and negotiates the subprotocol end to end', async () => {
    const ws = await open('wss://api.github.com/socket', ['x.v0', 'chat.v1']);
    expect(ws.protocol).toBe('chat.v1');
    // The upstream saw the client's offer, not something the proxy made up.
    expect(secure.upgrades.at(-1)!['sec-websocket-protocol']!.split(',').map((p) => p.trim())).toEqual(['x.v0', 'chat.v1']);

    const text = nextMessage(ws);
    ws.send('hello through airlock');
    const t = await text;
    expect(t.isBinary).toBe(false);
    expect(t.data.toString()).toBe('hello through airlock');

    const payload = Buffer.from([0, 1, 2, 250, 255]);
    const bin = nextMessage(ws);
    ws.send(payload);
    const b = await bin;
    expect(b.isBinary).toBe(true);
    expect(Buffer.compare(b.data, payload)).toBe(0);

    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    ws.close(1000, 'done');
    expect(await closed).toBe(1000);

    const line = await airlock.waitForAudit((l) => l.kind === 'websocket' && l.path === '/socket');
    expect(line).toMatchObject({ scheme: 'https', host: 'api.github.com', port: 443, status: 101, action: 'allow', rule: 'allow[0] api.github.com' });
    expect(line.bytes_up).toBe('hello through airlock'.length + payload.length);
    expect(line.bytes_down).toBe('hello through airlock'.length + payload.length);
  });

  it('a client that offers no subprotocol gets none (the proxy does not invent one)', async () => {
    const ws = await open('wss://api.github.com/socket/other', []);
    expect(ws.protocol).toBe('');
    expect(secure.upgrades.at(-1)!['sec-websocket-protocol']).toBeUndefined();
    const echoed = nextMessage(ws);
    ws.send('plain');
    expect((await echoed).data.toString()).toBe('plain');
    ws.terminate();
  });

  it('a WebSocket to a denied host fails with 403 at CONNECT; the host sees nothing', async () => {
    const err = (await open('wss://evil.example/socket', ['chat.v1']).catch((e: unknown) => e)) as Error & { status?: number };
    expect(err).toBeInstanceOf(Error);
    expect(err.status).toBe(403);
    expect(evil.connections).toBe(0);
  });

  it('a WebSocket to a denied path gets 403 from the proxy; the upstream sees no upgrade', async () => {
    const before = secure.upgrades.length;
    const err = (await open('wss://api.github.com/admin', ['chat.v1']).catch((e: unknown) => e)) as Error & { status?: number };
    expect(err.status).toBe(403);
    expect(secure.upgrades.length).toBe(before);
    const line = await airlock.waitForAudit((l) => l.kind === 'websocket' && l.path === '/admin');
    expect(line).toMatchObject({ status: 403, action: 'deny', reason: 'path_not_allowed' });
  });

  it("an upstream's refusal of the upgrade is passed on with its status", async () => {
    const err = (await open('wss://api.github.com/needs-auth', ['chat.v1']).catch((e: unknown) => e)) as Error & { status?: number };
    expect(err.status).toBe(401);
  });
});

describe('ws:// through a plain absolute-URI upgrade', () => {
  it('upgrades, picks the subprotocol and relays a frame', async () => {
    const socket = net.connect({ host: '127.0.0.1', port: airlock.port });
    await new Promise((resolve) => socket.once('connect', resolve));
    const key = Buffer.from('airlock-ws-key-1').toString('base64');
    const answer = await rawExchange(
      socket,
      [
        'GET http://api.github.com/socket HTTP/1.1',
        'Host: api.github.com',
        `Proxy-Authorization: ${airlock.proxyAuthorization}`,
        'Connection: Upgrade',
        'Upgrade: websocket',
        'Sec-WebSocket-Version: 13',
        `Sec-WebSocket-Key: ${key}`,
        'Sec-WebSocket-Protocol: chat.v1',
        '',
        '',
      ].join('\r\n'),
      /\r\n\r\n/,
    );
    expect(answer).toMatch(/^HTTP\/1\.1 101 /);
    const accept = createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
    expect(answer).toContain(`Sec-WebSocket-Accept: ${accept}`);
    expect(answer).toMatch(/Sec-WebSocket-Protocol: chat\.v1/i);
    expect(plain.upgrades.some((h) => h.host === 'api.github.com')).toBe(true);

    // One masked text frame "hi"; the echo comes back unmasked.
    const mask = Buffer.from([1, 2, 3, 4]);
    const data = Buffer.from('hi');
    const frame = Buffer.concat([Buffer.from([0x81, 0x80 | data.length]), mask, Buffer.from(data.map((b, i) => b ^ mask[i % 4]!))]);
    const echoed = await new Promise<Buffer>((resolve) => {
      socket.removeAllListeners('data');
      socket.setEncoding('latin1' as BufferEncoding);
      let got = '';
      socket.on('data', (c: string) => {
        got += c;
        if (got.length >= 4) resolve(Buffer.from(got, 'latin1'));
      });
      socket.write(frame);
    });
    expect([...echoed.subarray(0, 4)]).toEqual([0x81, 0x02, 0x68, 0x69]);
    socket.destroy();
    const line = await airlock.waitForAudit((l) => l.kind === 'websocket' && l.scheme === 'http');
    expect(line).toMatchObject({ host: 'api.github.com', port: 80, status: 101, path: '/socket' });
  });
});
