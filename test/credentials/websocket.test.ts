// WebSockets to a credential-bound host: the handshake gets the real token, and a secret the
// upstream echoes in a message reaches the session as the placeholder.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import WebSocket, { WebSocketServer } from 'ws';
import { createTestPki, rmTmp, startAirlock, startHttpsUpstream } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import { TunnelAgent, openTunnelTls, rawExchange } from '../helpers/clients.js';
import { credentialsFactory } from '../../src/credentials/sources.js';

const SECRET = 'ghs_WebSocketRealSecret0123456789abcd';
const PLACEHOLDER = 'ghp_airlockWsPlaceholder00000000000000';

describe('WebSocket to a credential-bound host', () => {
  let pki: TestPki;
  let upstream: TestUpstream;
  let airlock: AirlockHandle;
  const seenAuth: string[] = [];

  beforeAll(async () => {
    pki = await createTestPki();
    const wss = new WebSocketServer({ noServer: true });
    wss.on('connection', (socket, req) => {
      const token = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
      socket.on('message', () => socket.send(`your token is ${token}`));
    });
    upstream = await startHttpsUpstream({
      pki,
      names: ['api.github.com'],
      onUpgrade: (req, socket, head) => {
        seenAuth.push(String(req.headers.authorization));
        wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
      },
    });
    airlock = await startAirlock({
      policy: `version: 1\nname: ws-creds\nallow:\n  - host: api.github.com\ncredentials:\n  - name: github\n    env: [GH_TOKEN]\n    placeholder: ${PLACEHOLDER}\n    secret: { env: AIRLOCK_GITHUB_TOKEN }\n    hosts: [api.github.com]\n`,
      resolve: { 'api.github.com:443': upstream.port },
      upstreamCa: [pki.caPem],
      credentials: credentialsFactory({ AIRLOCK_GITHUB_TOKEN: SECRET }),
    });
  });

  afterAll(async () => {
    await airlock?.close();
    await upstream?.close();
    rmTmp(pki?.dir);
  });

  it('swaps the token into the handshake and scrubs it from messages', async () => {
    const agent = new TunnelAgent({ proxyPort: airlock.port, proxyAuthorization: airlock.proxyAuthorization, ca: readFileSync(airlock.bundlePath, 'utf8') });
    const ws = new WebSocket('wss://api.github.com/socket', { agent, headers: { Authorization: `Bearer ${PLACEHOLDER}` }, perMessageDeflate: false });
    const reply = await new Promise<string>((resolve, reject) => {
      ws.once('open', () => ws.send('hello'));
      ws.once('message', (data) => resolve(String(data)));
      ws.once('error', reject);
    });
    ws.close();
    expect(seenAuth).toEqual([`Bearer ${SECRET}`]);
    expect(reply).toBe(`your token is ${PLACEHOLDER}`);
    const line = await airlock.waitForAudit((l) => l.kind === 'websocket');
    expect(line.credentials).toEqual(['github']);
    expect(line.detail).toBe('secret_scrubbed');
  });

  it('refuses an upgrade that is not a valid WebSocket handshake before opening any upstream', async () => {
    const before = upstream.requests.length;
    const tunnel = await openTunnelTls({
      proxyPort: airlock.port,
      proxyAuthorization: airlock.proxyAuthorization,
      target: 'api.github.com:443',
      servername: 'api.github.com',
      ca: readFileSync(airlock.bundlePath, 'utf8'),
    });
    const answer = await rawExchange(
      tunnel,
      `GET /socket HTTP/1.1\r\nHost: api.github.com\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nAuthorization: Bearer ${PLACEHOLDER}\r\n\r\n`,
      /\r\n\r\n[\s\S]*\n/,
    );
    tunnel.destroy();
    expect(answer).toMatch(/^HTTP\/1\.1 400/);
    expect(upstream.requests.length).toBe(before);
  });
});
