// Sessions inside one ProxyRuntime: isolation between sessions, removal while connections are open,
// and shutdown with tunnels still open.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTestPki, rmTmp, sleep, startAirlock, startHttpUpstream, startHttpsUpstream, waitFor } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import http from 'node:http';
import { basicAuth, httpsViaProxy, openTunnelTls, rawConnect, rawExchange, tunnelThrough } from '../helpers/clients.js';
import { parsePolicy } from '../../src/policy/index.js';
import { parseAuditLines } from '../../src/audit/report.js';
import { isSessionId } from '../../src/sessions/session.js';

const POLICY = 'version: 1\nname: runtime-test\nallow:\n  - host: api.github.com\n';

let pki: TestPki;
let api: TestUpstream;

beforeAll(async () => {
  pki = await createTestPki();
  api = await startHttpsUpstream({ pki, names: ['api.github.com', 'github.com'] });
});

afterAll(async () => {
  await api?.close();
  rmTmp(pki?.dir);
});

const start = () => startAirlock({ policy: POLICY, resolve: { 'api.github.com:443': api.port, 'github.com:443': api.port }, upstreamCa: [pki.caPem] });

function auditOf(airlock: AirlockHandle) {
  return parseAuditLines(readFileSync(join(airlock.session.dir, 'audit.jsonl'), 'utf8'));
}

describe('sessions in one proxy', () => {
  let airlock: AirlockHandle;
  beforeAll(async () => {
    airlock = await start();
  });
  afterAll(async () => {
    await airlock?.close();
  });

  it('each session has its own id, token, CA, policy and audit log', async () => {
    const other = await airlock.runtime.sessions.create(parsePolicy('version: 1\nname: other\nallow:\n  - host: github.com\n', 'other.yaml'));
    expect(isSessionId(other.id)).toBe(true);
    expect(other.id).not.toBe(airlock.session.id);
    expect(other.token).not.toBe(airlock.session.token);
    expect(other.ca.certPem).not.toBe(airlock.session.ca.certPem);
    expect(other.audit.file).not.toBe(airlock.session.audit.file);
    const otherAuth = basicAuth(other.id, other.token);

    // The other session's policy applies to its credential: github.com yes, api.github.com no.
    const okOther = await httpsViaProxy({ proxyPort: airlock.port, proxyAuthorization: otherAuth, url: 'https://github.com/other', ca: readFileSync(other.bundlePath, 'utf8') });
    expect(okOther.status).toBe(200);
    expect((await rawConnect({ proxyPort: airlock.port, target: 'api.github.com:443', proxyAuthorization: otherAuth })).status).toBe(403);
    // One session's id with the other's token is not a credential.
    expect((await rawConnect({ proxyPort: airlock.port, target: 'api.github.com:443', proxyAuthorization: basicAuth(airlock.session.id, other.token) })).status).toBe(407);
    // The first session's CA does not vouch for the other session's leaves.
    await expect(
      httpsViaProxy({ proxyPort: airlock.port, proxyAuthorization: otherAuth, url: 'https://github.com/x', ca: airlock.session.ca.certPem }),
    ).rejects.toThrow();
    // Audit lines go to the session's own log.
    await waitFor(() => {
      other.audit.flush();
      return parseAuditLines(readFileSync(other.audit.file, 'utf8')).some((l) => l.path === '/other');
    }, 5_000, 'the other session audit line');
    expect((await airlock.auditLines()).some((l) => l.path === '/other')).toBe(false);
    await airlock.runtime.sessions.remove(other.id);
  });

  it('a session removed while its tunnel is open: no crash, the tunnel is ended and audited, the credential stops working', async () => {
    const session = await airlock.runtime.sessions.create(parsePolicy(POLICY, 'p.yaml'));
    const auth = basicAuth(session.id, session.token);
    const tunnel = await openTunnelTls({ proxyPort: airlock.port, proxyAuthorization: auth, target: 'api.github.com:443', servername: 'api.github.com', ca: readFileSync(session.bundlePath, 'utf8') });
    tunnel.on('error', () => {});
    const closed = new Promise((resolve) => tunnel.once('close', resolve));
    const first = await rawExchange(tunnel, 'GET /before-rm HTTP/1.1\r\nHost: api.github.com\r\n\r\n', /"body":""\}$/);
    expect(first).toMatch(/^HTTP\/1\.1 200 /);

    await airlock.runtime.sessions.remove(session.id);
    expect((await rawConnect({ proxyPort: airlock.port, target: 'api.github.com:443', proxyAuthorization: auth })).status).toBe(407);

    // The tunnel opened before removal must not outlive the session.
    const outcome = await Promise.race([closed.then(() => 'closed'), sleep(3_000).then(() => 'still open')]);
    if (outcome !== 'closed') {
      tunnel.write('GET /after-rm HTTP/1.1\r\nHost: api.github.com\r\n\r\n');
      await sleep(300);
      tunnel.destroy();
    }
    await sleep(100);
    expect(api.requests.some((r) => r.url === '/after-rm')).toBe(false);
    expect(outcome).toBe('closed');
    await waitFor(() => parseAuditLines(readFileSync(session.audit.file, 'utf8')).some((l) => l.kind === 'tunnel'), 3_000, 'the tunnel audit line');
  });
});

describe('session removal and plain HTTP', () => {
  it('a plain-HTTP stream in flight is ended when its session is removed', async () => {
    let upstreamClosed = false;
    const plain = await startHttpUpstream({
      handler: (_req, res) => {
        res.writeHead(200, { 'Content-Type': 'text/event-stream' });
        res.write('data: open\n\n');
        res.on('close', () => (upstreamClosed = true));
      },
    });
    const airlock = await startAirlock({ policy: POLICY, resolve: { 'api.github.com:80': plain.port } });
    try {
      const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port: airlock.port, path: 'http://api.github.com/stream', headers: { Host: 'api.github.com', 'Proxy-Authorization': airlock.proxyAuthorization } }, resolve);
        req.on('error', reject);
        req.end();
      });
      res.on('error', () => {});
      expect(res.statusCode).toBe(200);
      const ended = new Promise((resolve) => res.once('close', resolve));
      await airlock.runtime.sessions.remove(airlock.session.id);
      expect(await Promise.race([ended.then(() => 'ended'), sleep(3_000).then(() => 'still streaming')])).toBe('ended');
      await waitFor(() => upstreamClosed, 3_000, 'the upstream stream to be dropped');
    } finally {
      await airlock.close();
      await plain.close();
    }
  });
});

describe('shutdown', () => {
  it('runtime.close() ends open tunnels promptly and writes their audit lines', async () => {
    const airlock = await start();
    const bundle = readFileSync(airlock.bundlePath, 'utf8');
    const inspected = await tunnelThrough(airlock, 'api.github.com');
    inspected.on('error', () => {});
    const idle = await rawConnect({ proxyPort: airlock.port, target: 'api.github.com:443', proxyAuthorization: airlock.proxyAuthorization });
    idle.socket.on('error', () => {});
    const t0 = Date.now();
    await airlock.runtime.close();
    expect(Date.now() - t0).toBeLessThan(1_500);
    const tunnels = auditOf(airlock).filter((l) => l.kind === 'tunnel');
    expect(tunnels).toHaveLength(2);
    for (const t of tunnels) expect(t).toMatchObject({ host: 'api.github.com', status: 200, action: 'allow' });
    rmTmp(airlock.stateDir);
  });
});
