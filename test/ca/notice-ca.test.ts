// The notice CA from the attacker's side: what a copy of the session's trust bundle could be used
// for. Its key never leaves the process, and even a leaf it signed for a host the session may
// reach (which the proxy never mints; the test forces it) is refused by real verifiers: Node and
// curl (OpenSSL), git (libcurl with GnuTLS) and Python (OpenSSL). A leaf for a denied host, the
// only kind the proxy serves, verifies in each.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import * as x509 from '@peculiar/x509';
import { AsnConvert } from '@peculiar/asn1-schema';
import { NameConstraints, id_ce_nameConstraints } from '@peculiar/asn1-x509';
import { SessionRegistry } from '../../src/sessions/registry.js';
import type { Session } from '../../src/sessions/session.js';
import { parsePolicy } from '../../src/policy/index.js';
import { isolatedGitEnv, rmTmp, runProcess, tmpDir } from '../helpers/servers.js';

const POLICY = `
version: 1
name: notice
allow:
  - host: api.allowed.test
  - host: "*.wild.test"
  - host: blind.test
    inspect: false
  - host: 10.1.2.3
credentials:
  - name: token
    env: [TOKEN]
    secret: { env: NOTICE_TEST_SECRET }
    hosts: [creds.test]
`;

let dir: string;
let registry: SessionRegistry;
let session: Session;

beforeAll(async () => {
  dir = tmpDir('airlock-notice-ca-');
  registry = new SessionRegistry({ stateDir: dir, trustRoots: [], persistCaKey: true });
  session = await registry.create(parsePolicy(POLICY, 'notice.yaml'));
});
afterAll(async () => {
  await registry?.closeAll();
  rmTmp(dir);
});

/** Serves the notice CA's leaf for `name` on loopback while `fn` runs. */
async function serving<T>(name: string, fn: (port: number) => Promise<T>): Promise<T> {
  const context = await session.notice!.contextFor(name);
  const server = net.createServer((socket) => {
    const t = new tls.TLSSocket(socket, { isServer: true, secureContext: context });
    t.on('error', () => t.destroy());
    t.once('secure', () => t.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    return await fn((server.address() as net.AddressInfo).port);
  } finally {
    server.close();
  }
}

/** Whether each real client accepts the leaf for `name` with the session bundle as its only roots. */
async function verifiers(name: string): Promise<Record<string, boolean>> {
  return serving(name, async (port) => {
    const node = await new Promise<boolean>((resolve) => {
      const c = tls.connect({ host: '127.0.0.1', port, servername: name, ca: session.bundlePem });
      c.once('secureConnect', () => (c.destroy(), resolve(true)));
      c.once('error', () => resolve(false));
    });
    const curl = await runProcess('curl', ['-sS', '--noproxy', '*', '--cacert', session.bundlePath, '--resolve', `${name}:${port}:127.0.0.1`, `https://${name}:${port}/`]);
    const home = tmpDir('airlock-notice-git-');
    const git = await runProcess('git', ['-c', `http.curloptResolve=${name}:${port}:127.0.0.1`, 'ls-remote', `https://${name}:${port}/r.git`], {
      env: isolatedGitEnv(home, { GIT_SSL_CAINFO: session.bundlePath, GIT_TERMINAL_PROMPT: '0', NO_PROXY: '*' }),
    });
    rmTmp(home);
    const py = await runProcess('python3', [
      '-c',
      `import ssl,socket,sys\nctx=ssl.create_default_context(cafile=sys.argv[1])\ns=socket.create_connection(('127.0.0.1',${port}))\ntry:\n  ctx.wrap_socket(s,server_hostname=sys.argv[2]); print('ok')\nexcept ssl.SSLError as e: print('refused', e)`,
      session.bundlePath,
      name,
    ]);
    // git fails after the handshake either way (no repository here); only a TLS failure counts.
    if (process.env.DEBUG_NOTICE) console.log(name, curl.stderr, git.stderr, py.stdout);
    const gitTls = !/server certificate verification failed|certificate|SSL|TLS/i.test(git.stderr);
    return { node, curl: curl.code === 0, git: gitTls && /404|not found/i.test(git.stderr), python: py.stdout.startsWith('ok') };
  });
}

describe('the notice CA', () => {
  it('is in the bundle with critical name constraints excluding every reachable host and every IP, and permitting nothing else', () => {
    const pem = session.notice!.certPem;
    expect(session.bundlePem).toContain(pem);
    const ext = new x509.X509Certificate(pem).getExtension(id_ce_nameConstraints)!;
    expect(ext.critical).toBe(true);
    const nc = AsnConvert.parse(ext.value, NameConstraints);
    expect(nc.permittedSubtrees).toBeUndefined();
    const excluded = nc.excludedSubtrees!.map((s) => s.base.dNSName ?? `ip:${s.base.iPAddress}`);
    expect(excluded.sort()).toEqual(['api.allowed.test', 'blind.test', 'creds.test', 'ip:0.0.0.0/0', 'ip:::/0', 'wild.test'].sort());
  });

  it('has a key that cannot be exported and is never written, even with persistCaKey', async () => {
    await expect(session.notice!.exportKeyPem()).rejects.toThrow();
    const keys = readdirSync(session.dir).filter((f) => /key/i.test(f));
    expect(keys).toEqual(['ca-key.pem']);
    const written = readFileSync(join(session.dir, 'ca-key.pem'), 'utf8');
    expect(written).toBe(await session.ca.exportKeyPem());
    expect(existsSync(join(session.dir, 'notice-key.pem'))).toBe(false);
  });

  it('will not speak for a reachable host or an IP (the proxy asks before minting)', () => {
    const n = session.notice!;
    for (const host of ['api.allowed.test', 'x.api.allowed.test', 'wild.test', 'a.wild.test', 'blind.test', 'creds.test', '10.1.2.3', '127.0.0.1', '::1']) {
      expect(n.mayIssueOutsideExclusions(host), host).toBe(false);
    }
    expect(n.mayIssueOutsideExclusions('blocked.example')).toBe(true);
    expect(n.mayIssueOutsideExclusions('allowed.test')).toBe(true);
  });

  it('a leaf for a denied host verifies in Node, curl, git (GnuTLS) and Python', async () => {
    expect(await verifiers('blocked.example')).toEqual({ node: true, curl: true, git: true, python: true });
  }, 60_000);

  it('a leaf it signed for a reachable host is refused by Node, curl, git (GnuTLS) and Python', async () => {
    for (const host of ['api.allowed.test', 'a.wild.test', 'blind.test', 'creds.test']) {
      expect(await verifiers(host), host).toEqual({ node: false, curl: false, git: false, python: false });
    }
  }, 120_000);
});
