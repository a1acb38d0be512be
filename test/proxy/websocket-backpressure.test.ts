// A WebSocket peer that stops reading must slow the other side down through the proxy, not make
// the proxy buffer everything the fast side sends.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import WebSocket, { WebSocketServer } from 'ws';
import { createTestPki, rmTmp, sleep, startAirlock, startHttpsUpstream } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import { TunnelAgent } from '../helpers/clients.js';

const MB = 1 << 20;

describe('WebSocket backpressure through the proxy', () => {
  let pki: TestPki;
  let upstream: TestUpstream;
  let airlock: AirlockHandle;
  let serverSide: WebSocket | undefined;

  beforeAll(async () => {
    pki = await createTestPki();
    const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
    wss.on('connection', (socket) => {
      serverSide = socket;
      const chunk = Buffer.alloc(MB, 7);
      for (let i = 0; i < 64; i++) socket.send(chunk);
    });
    upstream = await startHttpsUpstream({
      pki,
      names: ['stream.test'],
      onUpgrade: (req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req)),
    });
    airlock = await startAirlock({
      policy: 'version: 1\nname: ws-bp\nallow:\n  - host: stream.test\n',
      resolve: { 'stream.test:443': upstream.port },
      upstreamCa: [pki.caPem],
    });
  });

  afterAll(async () => {
    await airlock?.close();
    await upstream?.close();
    rmTmp(pki?.dir);
  });

  it('a client that does not read leaves most of a 64 MB burst waiting at the upstream', async () => {
    const agent = new TunnelAgent({ proxyPort: airlock.port, proxyAuthorization: airlock.proxyAuthorization, ca: readFileSync(airlock.bundlePath, 'utf8') });
    const client = new WebSocket('wss://stream.test/burst', { agent, perMessageDeflate: false });
    await new Promise<void>((resolve, reject) => {
      client.once('open', () => {
        client.pause(); // stop reading: only socket buffers and the proxy stand between the peers
        resolve();
      });
      client.once('error', reject);
    });
    await sleep(2_000);
    // Without backpressure the proxy would have read the whole burst (upstream backlog ~0).
    expect(serverSide!.bufferedAmount).toBeGreaterThan(32 * MB);
    let received = 0;
    client.on('message', (data: Buffer) => (received += data.length));
    client.resume();
    const deadline = Date.now() + 20_000;
    while (received < 64 * MB && Date.now() < deadline) await sleep(50);
    expect(received).toBe(64 * MB);
    client.close();
  });
});
