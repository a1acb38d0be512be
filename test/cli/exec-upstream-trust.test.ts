// What an `airlock exec` session's upstream TLS refuses when no --upstream-ca is given (the proxy
// then verifies against Node's default store, ARCHITECTURE.md, Start-up):
// - a certificate issued by the session's own CA. The upstream here is the proxy itself: the
//   operator's --resolve sends api.github.com to a relay on this host, which CONNECTs back to the
//   session's proxy with the session's own credentials, so the proxy's upstream handshake meets the
//   leaf it mints for api.github.com from the session CA. Trusting that CA would let the proxy
//   talk to itself (and to anything holding a leaf of it) as api.github.com.
// - a certificate from a trusted CA (NODE_EXTRA_CA_CERTS) for another name.
// Each is a 502 before any request is sent upstream.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTestPki, rmTmp, runCli, startHttpsUpstream, tmpDir, waitFor } from '../helpers/servers.js';
import type { TestPki, TestUpstream } from '../helpers/servers.js';

let dir: string;
let pki: TestPki;
let wrongName: TestUpstream;

beforeAll(async () => {
  dir = tmpDir('airlock-upstream-trust-');
  pki = await createTestPki();
  wrongName = await startHttpsUpstream({ pki, names: ['something-else.example.com'] });
  writeFileSync(join(dir, 'policy.yaml'), 'version: 1\nname: upstream-trust\nallow:\n  - host: api.github.com\n');
});

afterAll(async () => {
  await wrongName?.close();
  rmTmp(dir, pki?.dir);
});

/** The session's audit lines (request ends), from the path exec prints at exit. */
function requestLines(stderr: string): Record<string, unknown>[] {
  const audit = /audit: (\S+audit\.jsonl)/.exec(stderr)?.[1];
  expect(audit, stderr).toBeDefined();
  return readFileSync(audit!, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.kind === 'request' && l.event !== 'admit');
}

const without = (env: NodeJS.ProcessEnv, name: string) => Object.fromEntries(Object.entries(env).filter(([k]) => k !== name));

describe('upstream TLS of an exec session without --upstream-ca', () => {
  it("refuses an upstream presenting a leaf of the session's own CA (the proxy reached through itself): 502, no request relayed", async () => {
    const stateDir = tmpDir('airlock-upstream-trust-state-');
    const proxyFile = join(stateDir, 'proxy-url');
    const relayed: string[] = [];
    let relayConnections = 0;
    // The relay: each connection becomes a CONNECT api.github.com:443 through the session's proxy,
    // then raw bytes both ways (at most 5, so that a proxy that trusted itself would not loop forever).
    const relay = net.createServer((client) => {
      client.on('error', () => {});
      if (++relayConnections > 5 || !existsSync(proxyFile)) return client.destroy();
      const proxy = new URL(readFileSync(proxyFile, 'utf8').trim());
      const auth = Buffer.from(`${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`).toString('base64');
      const up = net.connect({ host: proxy.hostname, port: Number(proxy.port) });
      up.on('error', () => client.destroy());
      up.write(`CONNECT api.github.com:443 HTTP/1.1\r\nHost: api.github.com:443\r\nProxy-Authorization: Basic ${auth}\r\n\r\n`);
      let head = '';
      const onHead = (chunk: Buffer) => {
        head += chunk.toString('latin1');
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        up.off('data', onHead);
        relayed.push(head.slice(0, head.indexOf('\r\n')));
        if (!/^HTTP\/1\.1 200/.test(head)) return client.destroy();
        const rest = Buffer.from(head.slice(end + 4), 'latin1');
        if (rest.length > 0) client.write(rest);
        client.pipe(up).pipe(client);
      };
      up.on('data', onHead);
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    const relayPort = (relay.address() as net.AddressInfo).port;
    try {
      const r = await runCli(
        ['exec', '--state-dir', stateDir, '--policy', join(dir, 'policy.yaml'), '--resolve', `api.github.com:443:127.0.0.1:${relayPort}`, '--',
          'sh', '-c', `printf %s "$HTTPS_PROXY" > '${proxyFile}' && exec curl -sS -o /dev/null -w '%{http_code}' --max-time 10 https://api.github.com/self-loop`],
        // The launching shell's extra roots do not name the session CA either way; without them the
        // default store is Node's own roots only.
        { env: without(process.env, 'NODE_EXTRA_CA_CERTS'), timeoutMs: 25_000 },
      );
      // The relay did reach the proxy, and the proxy let the CONNECT in: the refusal is the upstream
      // handshake's, not the policy's.
      await waitFor(() => relayed.length >= 1, 5_000, 'the relay CONNECT');
      expect(relayed[0]).toMatch(/^HTTP\/1\.1 200/);
      expect(r.stdout, r.stderr).toBe('502');
      const lines = requestLines(r.stderr);
      // One request: the session's own, refused upstream; none came back through the relay.
      expect(lines.map((l) => l.path)).toEqual(['/self-loop']);
      expect(lines[0]).toMatchObject({ status: 502, reason: 'upstream_error' });
      expect(String(lines[0]!.detail)).toMatch(/UNABLE_TO_VERIFY|CERT|ISSUER|SELF_SIGNED/i);
      expect(relayConnections).toBe(1);
    } finally {
      await new Promise<void>((resolve) => relay.close(() => resolve()));
      rmTmp(stateDir);
    }
  }, 60_000);

  it('refuses a certificate of a trusted CA (NODE_EXTRA_CA_CERTS) for another name: 502, the upstream sees no request', async () => {
    const stateDir = tmpDir('airlock-upstream-trust-state-');
    try {
      const r = await runCli(
        ['exec', '--state-dir', stateDir, '--policy', join(dir, 'policy.yaml'), '--resolve', `api.github.com:443:127.0.0.1:${wrongName.port}`, '--',
          'curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '10', 'https://api.github.com/wrong-name'],
        { env: { ...process.env, NODE_EXTRA_CA_CERTS: pki.caFile }, timeoutMs: 30_000 },
      );
      expect(r.stdout, r.stderr).toBe('502');
      expect(wrongName.requests).toHaveLength(0);
      const lines = requestLines(r.stderr);
      expect(lines).toEqual([expect.objectContaining({ path: '/wrong-name', status: 502, reason: 'upstream_error' })]);
      expect(String(lines[0]!.detail)).toMatch(/ALTNAME|HOSTNAME/i);
    } finally {
      rmTmp(stateDir);
    }
  }, 40_000);
});
