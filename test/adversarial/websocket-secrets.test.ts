// A hostile session against WebSockets: the secret in a refused upgrade's reason phrase, split
// across two messages, and a placeholder sent as a subprotocol (to an unbound host to steal it,
// to a bound host to have it swapped for clients that authenticate that way).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import type { Duplex } from 'node:stream';
import type http from 'node:http';
import WebSocket, { WebSocketServer } from 'ws';
import { createTestPki, rmTmp, startAirlock, startHttpsUpstream } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import { TunnelAgent, rawExchange, tunnelThrough } from '../helpers/clients.js';
import { secretLeaks } from '../helpers/secret-leaks.js';
import { credentialsFactory } from '../../src/credentials/sources.js';

const SECRET = 'ghs_WsReadbackSecret0123456789abcdefXYZ';
const PLACEHOLDER = 'ghp_airlockWsPlaceholderForAttacks00000';

function policy(extra = ''): string {
  return `version: 1
name: ws-attack
allow:
  - host: api.github.com
  - host: other.example
credentials:
  - name: github
    env: [GH_TOKEN]
    placeholder: ${PLACEHOLDER}
    secret: { env: AIRLOCK_GITHUB_TOKEN }
    hosts: [api.github.com]
${extra}`;
}

const protocols = (header: string | undefined) => (header ?? '').split(',').map((p) => p.trim());

describe('WebSocket attacks on a bound host', () => {
  let pki: TestPki;
  let bound: TestUpstream;
  let other: TestUpstream;
  let airlock: AirlockHandle;
  const offered: string[] = [];

  beforeAll(async () => {
    pki = await createTestPki();
    // Picks the last protocol offered, as servers that take a token there do, and echoes it.
    const wss = new WebSocketServer({ noServer: true, handleProtocols: (protocols) => [...protocols].at(-1) ?? false });
    wss.on('connection', (socket, req) => {
      const token = String(req.headers.authorization ?? '').replace(/^Bearer /, '') || String(socket.protocol);
      const url = req.url ?? '';
      if (url === '/split') {
        socket.send(`token: ${token.slice(0, 17)}`);
        socket.send(`${token.slice(17)} end`);
      } else if (url === '/split-slow') {
        socket.send(`token: ${token.slice(0, 11)}`);
        setTimeout(() => socket.send(`${token.slice(11)} end`), 20);
      } else if (url === '/split-b64') {
        const b64 = Buffer.from(`x-access-token:${token}`).toString('base64');
        socket.send(b64.slice(0, 30));
        socket.send(b64.slice(30));
      } else {
        socket.send(`protocol: ${socket.protocol}; token: ${token}`);
      }
    });
    const onUpgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      offered.push(String(req.headers['sec-websocket-protocol'] ?? ''));
      if (req.url === '/refuse') {
        const token = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
        socket.end(`HTTP/1.1 401 Bad Bearer ${token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
    };
    bound = await startHttpsUpstream({ pki, names: ['api.github.com'], onUpgrade });
    other = await startHttpsUpstream({ pki, names: ['other.example'], onUpgrade });
    airlock = await startAirlock({
      policy: policy(),
      resolve: { 'api.github.com:443': bound.port, 'other.example:443': other.port },
      upstreamCa: [pki.caPem],
      credentials: credentialsFactory({ AIRLOCK_GITHUB_TOKEN: SECRET }),
    });
  });

  afterAll(async () => {
    await airlock?.close();
    await Promise.all([bound?.close(), other?.close()]);
    rmTmp(pki?.dir);
  });

  function open(url: string, opts: { protocols?: string[]; auth?: boolean; via?: AirlockHandle } = {}) {
    const via = opts.via ?? airlock;
    const agent = new TunnelAgent({ proxyPort: via.port, proxyAuthorization: via.proxyAuthorization, ca: readFileSync(via.bundlePath, 'utf8') });
    const headers = opts.auth === false ? {} : { Authorization: `Bearer ${PLACEHOLDER}` };
    return new WebSocket(url, opts.protocols ?? [], { agent, headers, perMessageDeflate: false });
  }

  function messages(ws: WebSocket, count: number): Promise<string[]> {
    return new Promise((resolve, reject) => {
      const got: string[] = [];
      ws.on('message', (data) => {
        got.push(String(data));
        if (got.length === count) resolve(got);
      });
      ws.once('error', reject);
      ws.once('close', () => resolve(got));
    });
  }

  it('a refused upgrade does not carry the secret in its reason phrase', async () => {
    const tunnel = await tunnelThrough(airlock, 'api.github.com');
    const answer = await rawExchange(
      tunnel,
      `GET /refuse HTTP/1.1\r\nHost: api.github.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer ${PLACEHOLDER}\r\n\r\n`,
    );
    tunnel.destroy();
    expect(answer).toMatch(/^HTTP\/1\.1 401 /);
    expect(secretLeaks(answer, SECRET)).toEqual([]);
  });

  it('a secret split across two messages does not arrive whole once joined', async () => {
    for (const path of ['/split', '/split-slow', '/split-b64']) {
      const ws = open(`wss://api.github.com${path}`);
      const got = await messages(ws, 2);
      ws.close();
      expect(got).toHaveLength(2);
      expect(secretLeaks(got.join(''), SECRET, 8), path).toEqual([]);
      expect(secretLeaks(got.join('\n'), SECRET, 8), path).toEqual([]);
    }
  });

  it('a placeholder offered as a subprotocol to an unbound host is refused; the host sees nothing', async () => {
    const before = other.requests.length;
    const ws = open('wss://other.example/steal', { protocols: ['chat', PLACEHOLDER], auth: false });
    const status = await new Promise<number>((resolve) => {
      ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.once('error', (err: Error & { status?: number }) => resolve(err.status ?? -1));
      ws.once('open', () => resolve(101));
    });
    expect(status).toBe(403);
    expect(other.requests.length).toBe(before);
    const line = await airlock.waitForAudit((l) => l.kind === 'websocket' && l.path === '/steal');
    expect(line).toMatchObject({ action: 'deny', reason: 'credential_misuse' });
  });

  it('a placeholder offered as a subprotocol to a bound host is refused unless the credential lists that header', async () => {
    const ws = open('wss://api.github.com/proto', { protocols: ['chat', PLACEHOLDER], auth: false });
    const status = await new Promise<number>((resolve) => {
      ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.once('open', () => resolve(101));
    });
    expect(status).toBe(403);
    expect(offered.some((o) => o.includes(SECRET) || o.includes(PLACEHOLDER))).toBe(false);
  });

  describe('with sec-websocket-protocol among the credential headers', () => {
    let swapping: AirlockHandle;
    beforeAll(async () => {
      swapping = await startAirlock({
        policy: policy('    headers: [authorization, sec-websocket-protocol]\n'),
        resolve: { 'api.github.com:443': bound.port },
        upstreamCa: [pki.caPem],
        credentials: credentialsFactory({ AIRLOCK_GITHUB_TOKEN: SECRET }),
      });
    });
    afterAll(async () => swapping?.close());

    it('swaps the token into the offered subprotocol; the chosen one reads back as the placeholder', async () => {
      const ws = open('wss://api.github.com/proto', { protocols: ['chat', PLACEHOLDER], auth: false, via: swapping });
      const [reply] = await messages(ws, 1);
      expect(ws.protocol).toBe(PLACEHOLDER);
      ws.close();
      expect(protocols(offered.at(-1))).toEqual(['chat', SECRET]);
      expect(reply).toBe(`protocol: ${PLACEHOLDER}; token: ${PLACEHOLDER}`);
      const line = await swapping.waitForAudit((l) => l.kind === 'websocket' && l.path === '/proto');
      expect(line.credentials).toEqual(['github']);
    });
  });
});
