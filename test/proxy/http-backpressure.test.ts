// A side that stops reading must slow the other side down through the proxy, in both directions
// of an HTTP exchange inside a tunnel, instead of the proxy reading everything into memory.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import type http from 'node:http';
import type { Writable } from 'node:stream';
import { createTestPki, rmTmp, sleep, startAirlock, startHttpsUpstream } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import { openTunnelTls } from '../helpers/clients.js';

const MB = 1 << 20;
const TOTAL = 64 * MB;
// Loopback socket buffers (client, proxy both ways, upstream) hold several MiB each with
// autotuning; a proxy that did not pause its reads would let all 64 MiB through.
const STALL_BELOW = 40 * MB;
const CHUNK = Buffer.alloc(MB, 0x61);

/** Writes up to `total` bytes in 1 MiB pieces until done or no 'drain' comes for `quietMs`. */
async function writeUntilStalled(out: Writable, total: number, quietMs: number): Promise<number> {
  let sent = 0;
  while (sent < total) {
    sent += CHUNK.length;
    if (out.write(CHUNK)) continue;
    const drained = await Promise.race([
      new Promise<boolean>((resolve) => out.once('drain', () => resolve(true))),
      sleep(quietMs).then(() => false),
    ]);
    if (!drained) break;
  }
  return sent;
}

describe('HTTP backpressure through the proxy', () => {
  let pki: TestPki;
  let upstream: TestUpstream;
  let airlock: AirlockHandle;
  // The upload request, held unread by the upstream until the test lets it go.
  let heldUpload: { req: http.IncomingMessage; res: http.ServerResponse } | undefined;
  let downloadSent: Promise<number> | undefined;
  let downloadRes: http.ServerResponse | undefined;

  beforeAll(async () => {
    pki = await createTestPki();
    upstream = await startHttpsUpstream({
      pki,
      names: ['bulk.test'],
      handler: (req, res) => {
        if (req.url === '/upload') {
          req.pause(); // not read until the test resumes it
          heldUpload = { req, res };
          return;
        }
        res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': TOTAL });
        downloadRes = res;
        downloadSent = writeUntilStalled(res, TOTAL, 2_000);
      },
    });
    airlock = await startAirlock({
      policy: 'version: 1\nname: bulk\nallow:\n  - host: bulk.test\n',
      resolve: { 'bulk.test:443': upstream.port },
      upstreamCa: [pki.caPem],
    });
  });

  afterAll(async () => {
    await airlock?.close();
    await upstream?.close();
    rmTmp(pki?.dir);
  });

  const tunnel = () =>
    openTunnelTls({
      proxyPort: airlock.port,
      proxyAuthorization: airlock.proxyAuthorization,
      target: 'bulk.test:443',
      servername: 'bulk.test',
      ca: readFileSync(airlock.bundlePath, 'utf8'),
    });

  it('an upstream that does not read an upload stalls the client, and the upload completes once it reads', async () => {
    const socket = await tunnel();
    socket.write(`POST /upload HTTP/1.1\r\nHost: bulk.test\r\nContent-Type: application/octet-stream\r\nContent-Length: ${TOTAL}\r\n\r\n`);
    const sentBeforeStall = await writeUntilStalled(socket, TOTAL, 2_000);
    expect(sentBeforeStall).toBeLessThan(STALL_BELOW);

    // Let the upstream read: the rest goes through, intact in length, and the answer comes back.
    const { req, res } = heldUpload!;
    let received = 0;
    req.on('data', (c: Buffer) => (received += c.length));
    req.on('end', () => res.end(`got ${received}`));
    req.resume();
    const answer = new Promise<string>((resolve) => {
      let text = '';
      socket.on('data', (d: Buffer) => {
        text += d.toString('latin1');
        if (/got \d+$/.test(text)) resolve(text);
      });
    });
    const rest = await writeUntilStalled(socket, TOTAL - sentBeforeStall, 10_000);
    expect(sentBeforeStall + rest).toBe(TOTAL);
    expect(await answer).toMatch(new RegExp(`^HTTP/1.1 200 [^]*got ${TOTAL}$`));
    socket.destroy();
  });

  it('a client that does not read a download stalls the upstream, and the download completes once it reads', async () => {
    const socket = await tunnel();
    socket.pause(); // read nothing: only socket buffers and the proxy stand between the two
    socket.write('GET /download HTTP/1.1\r\nHost: bulk.test\r\n\r\n');
    while (!downloadSent) await sleep(20);
    const sentBeforeStall = await downloadSent;
    expect(sentBeforeStall).toBeLessThan(STALL_BELOW);

    // Read: the upstream finishes and every byte arrives.
    let bytes = 0;
    socket.on('data', (d: Buffer) => (bytes += d.length));
    socket.resume();
    const rest = await writeUntilStalled(downloadRes!, TOTAL - sentBeforeStall, 10_000);
    downloadRes!.end();
    expect(sentBeforeStall + rest).toBe(TOTAL);
    const deadline = Date.now() + 20_000;
    while (bytes < TOTAL && Date.now() < deadline) await sleep(50);
    expect(bytes).toBeGreaterThan(TOTAL); // the body plus the response head
    expect(bytes).toBeLessThan(TOTAL + 1024);
    socket.destroy();
  });
});
