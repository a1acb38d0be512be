// `airlock exec` end to end: the built CLI, real clients (curl, git, Node fetch via undici,
// python3 urllib) and real HTTPS servers on loopback that answer as api.github.com / github.com.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  createTestPki,
  isolatedGitEnv,
  rmTmp,
  runCli,
  startGitServer,
  startHttpsUpstream,
  tmpDir,
} from '../helpers/servers.js';
import type { GitServer, TestPki, TestUpstream } from '../helpers/servers.js';
import { parseAuditLines } from '../../src/audit/report.js';

const POLICY = `
version: 1
name: exec-test
allow:
  - host: api.github.com
  - host: github.com
`;

let pki: TestPki;
let api: TestUpstream;
let evil: TestUpstream;
let gitServer: GitServer;
let dir: string;
let policyFile: string;
let home: string;

beforeAll(async () => {
  pki = await createTestPki();
  api = await startHttpsUpstream({ pki, names: ['api.github.com'] });
  evil = await startHttpsUpstream({ pki, names: ['evil.example'] });
  gitServer = await startGitServer({ pki, names: ['github.com'] });
  dir = tmpDir();
  home = tmpDir('airlock-home-');
  policyFile = join(dir, 'policy.yaml');
  writeFileSync(policyFile, POLICY);
});

afterAll(async () => {
  await Promise.all([api?.close(), evil?.close(), gitServer?.close()]);
  rmTmp(dir, home, pki?.dir);
});

/** `airlock exec` with the test upstreams mapped in, in a fresh state dir. */
async function exec(command: string[]) {
  const stateDir = tmpDir('airlock-exec-state-');
  const args = [
    'exec',
    '--policy',
    policyFile,
    '--state-dir',
    stateDir,
    '--resolve',
    `api.github.com:443:127.0.0.1:${api.port}`,
    '--resolve',
    `github.com:443:127.0.0.1:${gitServer.port}`,
    '--resolve',
    `evil.example:443:127.0.0.1:${evil.port}`,
    '--upstream-ca',
    pki.caFile,
    '--',
    ...command,
  ];
  const result = await runCli(args, { env: isolatedGitEnv(home), timeoutMs: 30_000 });
  // Whatever the child did, airlock itself must not crash on the way out.
  expect(result.stderr).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
  // "airlock: session <id>: allowed <host×n ...|none>; denied <...|none>[; would deny (report mode) ...]; audit: <file>"
  const summary = /^airlock: session (s-[0-9a-f]+): allowed ([^;]*); denied ([^;]*)(?:; would deny \(report mode\) [^;]*)?; audit: (.*)$/m.exec(result.stderr);
  const audit = summary ? parseAuditLines(readFileSync(summary[4]!, 'utf8')) : [];
  return { ...result, stateDir, summary, audit, cleanup: () => rmTmp(stateDir) };
}

describe.concurrent('airlock exec with real clients', () => {
  it('curl reaches api.github.com (a local HTTPS server with its own CA) and gets 200', async () => {
    const r = await exec(['curl', '-sS', '--fail-with-body', '--max-time', '10', 'https://api.github.com/repos/airlock/curl?token=s3cret']);
    try {
      expect(r.code, r.stderr).toBe(0);
      const echoed = JSON.parse(r.stdout);
      expect(echoed).toMatchObject({ method: 'GET', path: '/repos/airlock/curl?token=s3cret', host: 'api.github.com' });
      // The proxy credential is for the proxy only: it never reaches the upstream.
      expect(echoed.headers['proxy-authorization']).toBeUndefined();
      expect(api.requests.filter((q) => q.url === '/repos/airlock/curl?token=s3cret')).toHaveLength(1);
      expect(r.summary, r.stderr).not.toBeNull();
      expect(r.summary![2]).toMatch(/api\.github\.com:443×\d+/);
      expect(r.summary![3]).toBe('none');
      const request = r.audit.find((l) => l.kind === 'request');
      expect(request).toMatchObject({ host: 'api.github.com', status: 200, action: 'allow', path: '/repos/airlock/curl?token=redacted' });
    } finally {
      r.cleanup();
    }
  }, 30_000);

  it('git ls-remote over smart HTTP works through the proxy', async () => {
    const r = await exec(['git', 'ls-remote', `https://github.com/${gitServer.repoName}`]);
    try {
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain(`${gitServer.headCommit}\tHEAD`);
      expect(r.stdout).toContain(`${gitServer.headCommit}\trefs/heads/main`);
      expect(r.audit.some((l) => l.kind === 'request' && l.host === 'github.com' && l.path.startsWith('/repo.git/info/refs') && l.status === 200)).toBe(true);
    } finally {
      r.cleanup();
    }
  }, 30_000);

  it('Node fetch with undici EnvHttpProxyAgent works through the proxy', async () => {
    const script = `
      import { EnvHttpProxyAgent, fetch } from 'undici';
      const res = await fetch('https://api.github.com/from-node', { dispatcher: new EnvHttpProxyAgent() });
      process.stdout.write(res.status + ' ' + await res.text());
      process.exit(res.status === 200 ? 0 : 1);
    `;
    const r = await exec([process.execPath, '--input-type=module', '-e', script]);
    try {
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.startsWith('200 ')).toBe(true);
      expect(JSON.parse(r.stdout.slice(4))).toMatchObject({ path: '/from-node', host: 'api.github.com' });
    } finally {
      r.cleanup();
    }
  }, 30_000);

  it('python3 urllib works through the proxy', async () => {
    const script = [
      'import json, urllib.request',
      "r = urllib.request.urlopen('https://api.github.com/from-python', timeout=10)",
      "print(r.status, json.loads(r.read())['path'])",
    ].join('\n');
    const r = await exec(['python3', '-c', script]);
    try {
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.trim()).toBe('200 /from-python');
    } finally {
      r.cleanup();
    }
  }, 30_000);

  it("exits with the child's exit code and prints the one-line summary", async () => {
    const r = await exec(['sh', '-c', 'exit 7']);
    try {
      expect(r.code).toBe(7);
      expect(r.summary, r.stderr).not.toBeNull();
      expect(r.summary![2]).toBe('none');
      expect(r.summary![3]).toBe('none');
      expect(r.stderr.trim().split('\n').filter((l) => l.startsWith('airlock: session'))).toHaveLength(1);
    } finally {
      r.cleanup();
    }
  }, 30_000);

  it('a tunnel still open when the child exits is closed, audited and counted (no crash)', async () => {
    // A background process holds a CONNECT tunnel open after the command itself has exited.
    const holder = `
      const http = require('node:http');
      const proxy = new URL(process.env.HTTPS_PROXY);
      const req = http.request({ host: proxy.hostname, port: proxy.port, method: 'CONNECT', path: 'api.github.com:443',
        headers: { 'Proxy-Authorization': 'Basic ' + Buffer.from(proxy.username + ':' + proxy.password).toString('base64') } });
      req.on('connect', (res, socket) => {
        if (res.statusCode !== 200) process.exit(1);
        require('node:fs').writeFileSync(process.argv[2], 'open');
        socket.on('close', () => process.exit(0));
        socket.on('error', () => {});
      });
      req.end();
      setTimeout(() => process.exit(2), 20000);
    `;
    const ready = join(dir, 'tunnel-open');
    const holderFile = join(dir, 'hold-tunnel.cjs');
    writeFileSync(holderFile, holder);
    const script = [
      `'${process.execPath}' '${holderFile}' '${ready}' >/dev/null 2>&1 &`,
      `for i in $(seq 100); do [ -f ${ready} ] && break; sleep 0.1; done`,
      'exit 3',
    ].join('\n');
    const started = Date.now();
    const r = await exec(['sh', '-c', script]);
    try {
      expect(r.code, r.stderr).toBe(3);
      expect(Date.now() - started).toBeLessThan(15_000);
      expect(r.summary, r.stderr).not.toBeNull();
      expect(r.summary![2]).toBe('api.github.com:443×1');
      expect(r.audit).toEqual([expect.objectContaining({ kind: 'tunnel', host: 'api.github.com', status: 200, action: 'allow' })]);
    } finally {
      r.cleanup();
    }
  }, 30_000);

  it('a denied host is refused (403 inside TLS under the notice CA) and its server never sees a connection', async () => {
    const r = await exec(['curl', '-sS', '--max-time', '10', '-o', '/dev/null', '-w', '%{http_connect} %{http_code}', 'https://evil.example/steal']);
    try {
      expect(r.stdout.trim()).toBe('200 403');
      expect(evil.connections).toBe(0);
      expect(evil.requests).toHaveLength(0);
      expect(r.summary![3]).toBe('evil.example:443×1');
      expect(r.audit).toEqual([
        expect.objectContaining({ kind: 'tunnel', method: 'CONNECT', host: 'evil.example', port: 443, status: 403, action: 'deny', reason: 'no_rule', rule: null }),
      ]);
    } finally {
      r.cleanup();
    }
  }, 30_000);
});
