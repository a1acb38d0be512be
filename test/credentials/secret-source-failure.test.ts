// A secret source that fails when a request needs it (a command that exits non-zero): the request
// is refused with 502, and the session learns that a credential is unavailable, never which
// program, file or variable holds it. The same for an HTTP request and a WebSocket upgrade,
// which share one swap step.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTestPki, rmTmp, startAirlock, startHttpsUpstream, tmpDir } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import { openTunnelTls, rawExchange } from '../helpers/clients.js';
import { credentialsFactory } from '../../src/credentials/sources.js';

const PLACEHOLDER = 'ghp_airlockFailingSourcePlaceholder00000';

let pki: TestPki;
let upstream: TestUpstream;
let airlock: AirlockHandle;
let dir: string;
let program: string;

beforeAll(async () => {
  pki = await createTestPki();
  dir = tmpDir();
  program = join(dir, 'fetch-token-from-vault');
  writeFileSync(program, '#!/bin/sh\nexit 3\n');
  chmodSync(program, 0o700);
  upstream = await startHttpsUpstream({ pki, names: ['api.github.com'] });
  airlock = await startAirlock({
    policy: `version: 1
name: failing-source
allow:
  - host: api.github.com
credentials:
  - name: github
    env: [GH_TOKEN]
    placeholder: ${PLACEHOLDER}
    secret: { command: [${program}], ttl_seconds: 60 }
    hosts: [api.github.com]
`,
    resolve: { 'api.github.com:443': upstream.port },
    upstreamCa: [pki.caPem],
    credentials: credentialsFactory({}),
  });
});

afterAll(async () => {
  await airlock?.close();
  await upstream?.close();
  rmTmp(pki?.dir, dir);
});

async function viaTunnel(request: string): Promise<string> {
  const tunnel = await openTunnelTls({
    proxyPort: airlock.port,
    proxyAuthorization: airlock.proxyAuthorization,
    target: 'api.github.com:443',
    servername: 'api.github.com',
    ca: readFileSync(airlock.bundlePath, 'utf8'),
  });
  try {
    return await rawExchange(tunnel, request);
  } finally {
    tunnel.destroy();
  }
}

describe('a secret source that fails at request time', () => {
  it.each([
    ['an HTTP request', '/http', ''],
    ['a WebSocket upgrade', '/ws', 'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'],
  ])('%s gets a 502 that names nothing of the source; the upstream sees nothing', async (_what, path, extra) => {
    const before = upstream.requests.length;
    const answer = await viaTunnel(`GET ${path} HTTP/1.1\r\nHost: api.github.com\r\n${extra}Authorization: Bearer ${PLACEHOLDER}\r\n\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 502 /);
    expect(answer).toContain('a credential this request needs is unavailable right now');
    expect(answer).not.toContain('fetch-token-from-vault');
    expect(answer).not.toContain(dir);
    expect(answer).not.toMatch(/secret command|exit code/);
    expect(upstream.requests.length).toBe(before);
    const line = await airlock.waitForAudit((l) => l.path === path);
    expect(line).toMatchObject({ status: 502, reason: 'upstream_error' });
  });
});
