// `airlock run` against the real Docker engine: the built CLI starts session containers whose only
// way out is the proxy. "api.github.com" and the other upstreams are HTTPS servers of this test on
// the host (the proxy dials them via --resolve); the "outside" is a container on a network the
// test makes. No probe leaves this machine: every address tried is the test's own or the host's.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type net from 'node:net';
import { join } from 'node:path';
import { describeDocker, ensureAgentImage } from '../helpers/docker.js';
import { CLI_PATH, createTestPki, echoHandler, freePort, rmTmp, runCli, runProcess, startHttpsUpstream, tmpDir, waitFor } from '../helpers/servers.js';
import type { RecordedRequest, TestPki, TestUpstream } from '../helpers/servers.js';
import { parseAuditLines } from '../../src/audit/report.js';
import {
  docker,
  dockerOk,
  execScript,
  expectNoLeftovers,
  finishSession,
  inspectContainer,
  leftovers,
  listeners,
  NO_LEFTOVERS,
  parseProbes,
  PROBE_PRELUDE,
  secretsIn,
  secretsInContainerFs,
  secretsInTree,
  sessionCommand,
  sessionSummary,
  spawnCli,
  waitExit,
  waitForSession,
} from './run-helpers.js';
import type { LiveCli, ProbeResult, SessionContainer } from './run-helpers.js';

// The real secrets: fresh per run, so no image layer or earlier run can hold them.
const REAL_A = `ghp_realA${randomBytes(16).toString('hex')}`;
const REAL_B = `glpat-realB${randomBytes(16).toString('hex')}`;
const REAL_D = `ghp_realD${randomBytes(16).toString('hex')}`;
const SECRETS = { REAL_A, REAL_B, REAL_D } as const;

const POLICY_A = `
version: 1
name: session-a
allow:
  - host: api.github.com
credentials:
  - preset: github
    secret: { env: AIRLOCK_GITHUB_TOKEN }
`;

const POLICY_B = `
version: 1
name: session-b
allow:
  - host: api.gitlab.test
credentials:
  - name: gitlab
    env: [GITLAB_TOKEN]
    hosts: [api.gitlab.test]
    in: [header]
    secret: { env: AIRLOCK_GITLAB_TOKEN }
`;

const RUN_ID = randomBytes(3).toString('hex');
const SLOW = 30 * 60_000;

let image: string;
let pki: TestPki;
/** api.github.com, listening on 0.0.0.0: reachable in principle at every host address. */
let github: WideUpstream;
let gitlab: TestUpstream;
let evil: TestUpstream;
let work: string;
let policyA: string;
let policyB: string;
/** The environment of the test process minus anything that could hold one of our secrets. */
let baseEnv: NodeJS.ProcessEnv;
/** Every text the tests saw come out of airlock, for the final secret search. */
const outputs: Array<[string, string]> = [];
/** State dirs used, searched for secrets at the end. */
const stateDirs: string[] = [];
/** Workspaces and other scratch dirs, removed at the end. */
const scratch: string[] = [];

interface WideUpstream {
  readonly port: number;
  readonly requests: RecordedRequest[];
  close(): Promise<void>;
}

/** An HTTPS echo server on 0.0.0.0 (the shared helpers only listen on 127.0.0.1). */
async function startWideHttpsUpstream(names: string[]): Promise<WideUpstream> {
  const { key, cert } = await pki.issue(names);
  const requests: RecordedRequest[] = [];
  const server = https.createServer({ key, cert, ALPNProtocols: ['http/1.1'] }, (req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: { ...req.headers } });
    echoHandler(req, res);
  });
  server.on('tlsClientError', () => {});
  await new Promise<void>((resolve) => server.listen({ host: '0.0.0.0', port: 0 }, resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function newStateDir(): string {
  const dir = tmpDir('airlock-run-state-');
  stateDirs.push(dir);
  return dir;
}

function newWorkspace(): string {
  const dir = tmpDir('airlock-run-ws-');
  // Root's sessions run as the image's user (1000), which writes here.
  chmodSync(dir, 0o777);
  scratch.push(dir);
  return dir;
}

/** `airlock run` arguments for an embedded-proxy session with the test upstreams mapped in. */
function runArgs(policy: string, stateDir: string, extra: readonly string[], command: readonly string[]): string[] {
  return [
    'run',
    '--policy',
    policy,
    '--image',
    image,
    '--state-dir',
    stateDir,
    '--resolve',
    `api.github.com:443:127.0.0.1:${github.port}`,
    '--resolve',
    `api.gitlab.test:443:127.0.0.1:${gitlab.port}`,
    '--resolve',
    `evil.example:443:127.0.0.1:${evil.port}`,
    '--upstream-ca',
    pki.caFile,
    // These tests are about the bridge mode; relay.test.ts covers the default (no network).
    '--network-mode',
    'bridge',
    ...extra,
    '--',
    ...command,
  ];
}

function record(label: string, r: { stdout: string; stderr: string }): void {
  outputs.push([`${label} stdout`, r.stdout], [`${label} stderr`, r.stderr]);
}

function containerName(tag: string): string {
  return `airlock-test-${tag}-${RUN_ID}-${randomBytes(2).toString('hex')}`;
}

function requestsTo(upstream: { requests: RecordedRequest[] }, path: string): RecordedRequest[] {
  return upstream.requests.filter((r) => r.url === path);
}

/** curl on the host (the test's own side), for control checks. */
async function hostCurl(args: readonly string[]): Promise<{ rc: number | null; http: string; connect: string; body: string }> {
  const r = await runProcess('curl', ['-sS', '--connect-timeout', '3', '--max-time', '8', '-w', '\n%{http_code} %{http_connect}', ...args], {
    env: baseEnv,
    timeoutMs: 15_000,
  });
  const lines = r.stdout.split('\n');
  const [http = '000', connect = '000'] = (lines.pop() ?? '').split(' ');
  return { rc: r.code, http, connect, body: lines.join('\n') };
}

/** "Nothing answered": curl failed before any HTTP status (refused, dropped, unresolvable). */
function expectNoAnswer(p: ProbeResult | undefined, what: string): void {
  expect(p, `probe ${what} did not report`).toBeDefined();
  expect({ what, rc: p!.rc === 0 ? 'succeeded' : 'failed', http: p!.http, connect: p!.connect }).toEqual({
    what,
    rc: 'failed',
    http: '000',
    connect: '000',
  });
  // 6: could not resolve, 7: could not connect (refused/unreachable), 28: timed out (dropped).
  expect([6, 7, 28], `${what}: ${p!.err}`).toContain(p!.rc);
}

beforeAll(async () => {
  // AIRLOCK_RUN_TEST_IMAGE: an existing image to use instead (local development only).
  image = process.env.AIRLOCK_RUN_TEST_IMAGE || (await ensureAgentImage());
  baseEnv = { ...process.env };
  for (const name of Object.keys(baseEnv)) {
    if (/^AIRLOCK_|_PROXY$|^(http|https|all|no)_proxy$/i.test(name)) delete baseEnv[name];
  }
  pki = await createTestPki();
  github = await startWideHttpsUpstream(['api.github.com']);
  gitlab = await startHttpsUpstream({ pki, names: ['api.gitlab.test'] });
  evil = await startHttpsUpstream({ pki, names: ['evil.example'] });
  work = tmpDir('airlock-run-test-');
  // World-readable: the non-root test reads it as nobody.
  chmodSync(work, 0o755);
  policyA = join(work, 'policy-a.yaml');
  policyB = join(work, 'policy-b.yaml');
  writeFileSync(policyA, POLICY_A, { mode: 0o644 });
  writeFileSync(policyB, POLICY_B, { mode: 0o644 });
}, SLOW);

afterAll(async () => {
  await Promise.all([github?.close(), gitlab?.close(), evil?.close()]);
  // Whatever a failed test left: only sessions of launchers that are gone (ours, by now).
  await runCli(['gc'], { env: baseEnv }).catch(() => {});
  rmTmp(work, pki?.dir, ...stateDirs, ...scratch);
}, 120_000);

describeDocker('airlock run: two concurrent sessions on the real engine', () => {
  interface Live {
    cli: LiveCli;
    c: SessionContainer;
    workspace: string;
    stateDir: string;
    proxyUrl: URL;
    placeholders: Record<string, string>;
  }
  let a: Live;
  let b: Live;
  let outside: { network: string; container: string; ip: string; gateway: string; dir: string } | undefined;

  async function start(tag: string, policy: string, secretEnv: Record<string, string>): Promise<Omit<Live, 'c' | 'proxyUrl' | 'placeholders'> & { name: string }> {
    const workspace = newWorkspace();
    const stateDir = newStateDir();
    const name = containerName(tag);
    const cli = spawnCli(runArgs(policy, stateDir, ['--workspace', workspace, '--name', name], sessionCommand()), { ...baseEnv, ...secretEnv });
    return { cli, workspace, stateDir, name };
  }

  async function up(s: Awaited<ReturnType<typeof start>>): Promise<Live> {
    const c = await waitForSession(s.cli, s.name, join(s.workspace, 'ready'));
    const proxyUrl = new URL(readFileSync(join(s.workspace, 'proxy-url'), 'utf8').trim());
    const { info } = await inspectContainer(s.name);
    const placeholders: Record<string, string> = {};
    for (const e of info.Config.Env) {
      const [k, ...v] = e.split('=');
      if (['GH_TOKEN', 'GITHUB_TOKEN', 'GITLAB_TOKEN'].includes(k!)) placeholders[k!] = v.join('=');
    }
    return { cli: s.cli, workspace: s.workspace, stateDir: s.stateDir, c, proxyUrl, placeholders };
  }

  beforeAll(async () => {
    // Both launchers at once, each with only its own secret in its environment.
    const [sa, sb] = await Promise.all([
      start('a', policyA, { AIRLOCK_GITHUB_TOKEN: REAL_A }),
      start('b', policyB, { AIRLOCK_GITLAB_TOKEN: REAL_B }),
    ]);
    [a, b] = await Promise.all([up(sa), up(sb)]);

    // "The outside": an HTTPS server in a container on a separate (ordinary) network.
    const dir = tmpDir('airlock-outside-');
    scratch.push(dir);
    chmodSync(dir, 0o755);
    const leaf = await pki.issue(['outside.test']);
    writeFileSync(join(dir, 'cert.pem'), leaf.cert, { mode: 0o644 });
    writeFileSync(join(dir, 'key.pem'), leaf.key, { mode: 0o644 });
    writeFileSync(
      join(dir, 'serve.py'),
      [
        'import http.server, ssl',
        "s = http.server.HTTPServer(('0.0.0.0', 8443), http.server.SimpleHTTPRequestHandler)",
        'ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)',
        "ctx.load_cert_chain('/srv/outside/cert.pem', '/srv/outside/key.pem')",
        's.socket = ctx.wrap_socket(s.socket, server_side=True)',
        's.serve_forever()',
      ].join('\n'),
      { mode: 0o644 },
    );
    const network = `airlock-test-outside-${RUN_ID}`;
    const container = `airlock-test-outside-srv-${RUN_ID}`;
    await dockerOk(['network', 'create', '--label', 'airlock-test=outside', network]);
    outside = { network, container, ip: '', gateway: '', dir };
    await dockerOk([
      'run', '-d', '--name', container, '--network', network, '--user', '0:0', '--label', 'airlock-test=outside',
      '-v', `${dir}:/srv/outside:ro`, image, 'python3', '/srv/outside/serve.py',
    ]);
    const net = JSON.parse(await dockerOk(['inspect', '-f', `{{json .NetworkSettings.Networks}}`, container])) as Record<string, { IPAddress: string; Gateway: string }>;
    outside.ip = net[network]!.IPAddress;
    outside.gateway = net[network]!.Gateway;
    // Control: from the host the outside server answers.
    await waitFor(async () => (await hostCurl(['-k', `https://${outside!.ip}:8443/`])).http === '200', 20_000, 'the outside server');
  }, 180_000);

  afterAll(async () => {
    for (const s of [a, b]) {
      if (s && !s.cli.exited()) {
        await finishSession(s.c.name, 0).catch(() => {});
        await waitExit(s.cli, 30_000).catch(() => {});
      }
    }
    if (outside) {
      await docker(['rm', '-f', outside.container]);
      await docker(['network', 'rm', outside.network]);
      rmTmp(outside.dir);
    }
  }, 120_000);

  it("runs the container locked down: internal network, no capabilities, no new privileges, caller uid (root's: the image's user)", async () => {
    const { info } = await inspectContainer(a.c.name);
    expect(info.HostConfig.CapDrop).toEqual(['ALL']);
    expect(info.HostConfig.SecurityOpt).toContain('no-new-privileges');
    expect(info.Config.User).toBe(process.getuid!() === 0 ? '1000:1000' : `${process.getuid!()}:${process.getgid!()}`);
    expect(info.HostConfig.NetworkMode).toBe(`airlock-${a.c.sessionId}`);
    const network = JSON.parse(await dockerOk(['network', 'inspect', `airlock-${a.c.sessionId}`]))[0];
    expect(network.Internal).toBe(true);
    expect(network.Labels['airlock.session']).toBe(a.c.sessionId);
    expect(a.c.launcherPid).toBe(String(a.cli.child.pid));
    // Its proxy is on its own gateway; the two sessions have different networks.
    expect(a.proxyUrl.hostname).toBe('host.docker.internal');
    expect(a.c.gateway).not.toBe(b.c.gateway);
    // (ahostsv4: an IPv6 lookup would fall through to DNS, which never answers on this network.)
    const hosts = await execScript(a.c.name, 'getent ahostsv4 host.docker.internal');
    expect(hosts.stdout.trim().split(/\s+/)[0]).toBe(a.c.gateway);
    const iptables = await runProcess('iptables', ['-w', '-S', `AIRLOCK-${a.c.sessionId}`]);
    expect(iptables.stdout).toContain(`-d ${a.c.gateway}/32 -p tcp -m tcp --dport ${a.proxyUrl.port} -j ACCEPT`);
    expect(iptables.stdout).toContain('-j DROP');
  }, 30_000);

  it('curl to the allowed host gets 200 and the upstream sees the real token swapped in; other hosts get 403', async () => {
    const script = (session: string, header: string, host: string) => `
      ${PROBE_PRELUDE}
      curl -sS --max-time 15 -w '\\nHTTP %{http_code}\\n' -H "Authorization: Bearer ${header}" https://${host}/repos/airlock/run?from=${session}
      probe denied-evil https://evil.example/?from=${session}
      probe denied-other https://${host === 'api.github.com' ? 'api.gitlab.test' : 'api.github.com'}/?from=${session}
      probe denied-ip -k https://${outside!.ip}:8443/?from=${session}
      probe denied-gateway -k https://${a.c.gateway}:${github.port}/?from=${session}
      probe denied-loopback --noproxy '' -k https://127.0.0.1:${github.port}/?from=${session}
      wait
    `;
    const [ra, rb] = await Promise.all([
      execScript(a.c.name, script('a', '$GH_TOKEN', 'api.github.com')),
      execScript(b.c.name, script('b', '$GITLAB_TOKEN', 'api.gitlab.test')),
    ]);
    record('session a curl', ra);
    record('session b curl', rb);
    for (const [r, upstream, real, placeholder, session] of [
      [ra, github, REAL_A, a.placeholders.GH_TOKEN, 'a'],
      [rb, gitlab, REAL_B, b.placeholders.GITLAB_TOKEN, 'b'],
    ] as const) {
      expect(r.stdout, r.stderr).toContain('HTTP 200');
      // The upstream echoed the header back; the proxy scrubbed it on the way to the container.
      expect(r.stdout).toContain('"authorization":"Bearer ');
      const seen = requestsTo(upstream, `/repos/airlock/run?from=${session}`);
      expect(seen).toHaveLength(1);
      expect(seen[0]!.headers.authorization).toBe(`Bearer ${real}`);
      expect(placeholder).toBeTruthy();
      expect(placeholder).not.toBe(real);
      // The echo of the header came back scrubbed: the container never sees the real value.
      expect(secretsIn(r.stdout + r.stderr, SECRETS)).toEqual([]);
      const probes = parseProbes(r.stdout);
      for (const name of ['denied-evil', 'denied-other', 'denied-ip', 'denied-gateway', 'denied-loopback']) {
        expect({ name, connect: probes.get(name)?.connect, rc: probes.get(name)?.rc === 0 }).toEqual({ name, connect: '403', rc: false });
      }
    }
    // Denied requests never reached any upstream.
    expect(evil.requests).toEqual([]);
    expect(github.requests.filter((r) => r.url.includes('from=b') || r.url === '/?from=a')).toEqual([]);
    expect(gitlab.requests.filter((r) => r.url.includes('from=a') || r.url === '/?from=b')).toEqual([]);
  }, 60_000);

  it('each session sees only its own placeholders', async () => {
    expect(Object.keys(a.placeholders).sort()).toEqual(['GH_TOKEN', 'GITHUB_TOKEN']);
    expect(Object.keys(b.placeholders)).toEqual(['GITLAB_TOKEN']);
    // One credential, two variables: the same placeholder; the other session's differs.
    expect(a.placeholders.GITHUB_TOKEN).toBe(a.placeholders.GH_TOKEN);
    const all = [a.placeholders.GH_TOKEN, b.placeholders.GITLAB_TOKEN];
    expect(new Set(all).size).toBe(2);
    for (const p of all) expect(secretsIn(p!, SECRETS)).toEqual([]);
    const envA = await execScript(a.c.name, 'env');
    const envB = await execScript(b.c.name, 'env');
    expect(envA.stdout).toContain(`GH_TOKEN=${a.placeholders.GH_TOKEN}`);
    expect(envA.stdout).not.toContain('GITLAB_TOKEN');
    expect(envB.stdout).toContain(`GITLAB_TOKEN=${b.placeholders.GITLAB_TOKEN}`);
    expect(envB.stdout).not.toMatch(/^(GH_TOKEN|GITHUB_TOKEN)=/m);
    // Different proxy credentials, ports and gateways.
    expect(a.proxyUrl.username).toBe(a.c.sessionId);
    expect(b.proxyUrl.username).toBe(b.c.sessionId);
    expect(a.proxyUrl.password).not.toBe(b.proxyUrl.password);
    // A's placeholder sent through B to B's host is not swapped: B's broker does not know it.
    const r = await execScript(
      b.c.name,
      `curl -sS --max-time 15 -o /dev/null -w 'HTTP %{http_code}\\n' -H "Authorization: Bearer ${a.placeholders.GH_TOKEN}" https://api.gitlab.test/foreign-placeholder`,
    );
    record('foreign placeholder', r);
    const seen = requestsTo(gitlab, '/foreign-placeholder');
    for (const req of seen) expect(secretsIn(JSON.stringify(req.headers), SECRETS)).toEqual([]);
  }, 60_000);

  it("the other session's proxy credential does not work, from its container or from the host", async () => {
    // Each container tries the other's proxy URL (as the other wrote it to its workspace).
    const cross = async (self: Live, other: Live, tag: string, ownHost: string, otherHost: string) => {
      const otherUrl = readFileSync(join(other.workspace, 'proxy-url'), 'utf8').trim();
      const cred = `${other.proxyUrl.username}:${other.proxyUrl.password}`;
      const r = await execScript(
        self.c.name,
        `${PROBE_PRELUDE}
        probe own-url https://${ownHost}/cross/${tag}/own &
        probe other-url-verbatim -x '${otherUrl}' https://${otherHost}/cross/${tag}/verbatim &
        probe other-cred-at-own-port -x 'http://${cred}@host.docker.internal:${self.proxyUrl.port}' https://${otherHost}/cross/${tag}/own-port &
        probe other-cred-own-host -x 'http://${cred}@host.docker.internal:${self.proxyUrl.port}' https://${ownHost}/cross/${tag}/own-port-own-host &
        probe other-url-at-its-gateway -x 'http://${cred}@${other.c.gateway}:${other.proxyUrl.port}' https://${otherHost}/cross/${tag}/its-gateway &
        wait`,
      );
      record(`cross credential ${tag}`, r);
      const probes = parseProbes(r.stdout);
      expect(probes.get('own-url')).toMatchObject({ rc: 0, http: '200' });
      // The other's URL as is: host.docker.internal is this session's gateway, where only this
      // session's port is open; the other's gateway is not reachable at all.
      expectNoAnswer(probes.get('other-url-verbatim'), `${tag}: other-url-verbatim`);
      expectNoAnswer(probes.get('other-url-at-its-gateway'), `${tag}: other-url-at-its-gateway`);
      // The other's credential at this session's own listener: refused.
      for (const name of ['other-cred-at-own-port', 'other-cred-own-host']) {
        expect({ name, ...probes.get(name), err: undefined, rc: probes.get(name)!.rc === 0 }).toMatchObject({ name, connect: '407', http: '000', rc: false });
      }
    };
    await Promise.all([cross(a, b, 'a', 'api.github.com', 'api.gitlab.test'), cross(b, a, 'b', 'api.gitlab.test', 'api.github.com')]);
    for (const tag of ['a', 'b']) {
      for (const what of ['verbatim', 'own-port', 'own-port-own-host', 'its-gateway']) {
        expect([...github.requests, ...gitlab.requests].filter((q) => q.url === `/cross/${tag}/${what}`)).toEqual([]);
      }
    }

    // From the host, where both listeners are reachable: each accepts only its own credential.
    const aAtHost = `http://${a.proxyUrl.username}:${a.proxyUrl.password}@${a.c.gateway}:${a.proxyUrl.port}`;
    const bAtHost = `http://${b.proxyUrl.username}:${b.proxyUrl.password}@${b.c.gateway}:${b.proxyUrl.port}`;
    const bCredAtAHost = `http://${b.proxyUrl.username}:${b.proxyUrl.password}@${a.c.gateway}:${a.proxyUrl.port}`;
    const aCredAtBHost = `http://${a.proxyUrl.username}:${a.proxyUrl.password}@${b.c.gateway}:${b.proxyUrl.port}`;
    const own = await hostCurl(['-k', '-x', aAtHost, 'https://api.github.com/cross/host-own-a']);
    expect(own.http).toBe('200');
    const ownB = await hostCurl(['-k', '-x', bAtHost, 'https://api.gitlab.test/cross/host-own-b']);
    expect(ownB.http).toBe('200');
    const crossAB = await hostCurl(['-k', '-x', bCredAtAHost, 'https://api.github.com/cross/host-b-at-a']);
    const crossBA = await hostCurl(['-k', '-x', aCredAtBHost, 'https://api.gitlab.test/cross/host-a-at-b']);
    expect([crossAB.connect, crossAB.http]).toEqual(['407', '000']);
    expect([crossBA.connect, crossBA.http]).toEqual(['407', '000']);
    expect(requestsTo(github, '/cross/host-b-at-a')).toEqual([]);
    expect(requestsTo(gitlab, '/cross/host-a-at-b')).toEqual([]);
  }, 60_000);

  it('without proxy variables nothing answers: outside network, host ports, host addresses, DNS', async () => {
    const port = github.port;
    // Every IPv4 address of this host (its primary address, docker0, every bridge incl. the
    // session's own gateway and the outside network's), plus docker0 in case it is down.
    const hostname = await runProcess('hostname', ['-I']).catch(() => ({ stdout: '' }));
    const ipAddr = await runProcess('ip', ['-4', '-o', 'addr', 'show']).catch(() => ({ stdout: '' }));
    const hostIps = [...hostname.stdout.split(/\s+/), ...[...ipAddr.stdout.matchAll(/\binet (\d+\.\d+\.\d+\.\d+)\//g)].map((m) => m[1]!)].filter(
      (ip) => /^\d+\.\d+\.\d+\.\d+$/.test(ip) && !ip.startsWith('127.'),
    );
    const targets = [...new Set([...hostIps, '172.17.0.1', a.c.gateway, outside!.gateway])];
    expect(hostIps.filter((ip) => ![a.c.gateway, outside!.gateway, b.c.gateway].includes(ip)).length).toBeGreaterThan(0);

    // Controls: the same ports answer where no session firewall stands in between.
    expect((await hostCurl(['-k', `https://${a.c.gateway}:${port}/control/host`])).http).toBe('200');
    expect((await hostCurl(['-k', `https://${outside!.ip}:8443/`])).http).toBe('200');
    const fromOutside = await docker([
      'exec', outside!.container, 'curl', '-sk', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '8', `https://${a.c.gateway}:${port}/control/outside`,
    ]);
    expect(fromOutside.stdout, 'a container on another network reaches the session gateway at that port').toBe('200');
    expect(requestsTo(github, '/control/outside')).toHaveLength(1);

    const lines = [
      `direct outside-https -k https://${outside!.ip}:8443/ &`,
      `direct outside-http http://${outside!.ip}:8443/ &`,
      `direct gateway-port -k https://${a.c.gateway}:${port}/direct/gateway &`,
      `direct hdi-port -k https://host.docker.internal:${port}/direct/hdi &`,
      `direct api-by-name https://api.github.com/direct/name &`,
      ...targets.map((ip, i) => `direct host-${i} -k https://${ip}:${port}/direct/host-${i} &`),
      `out=$(RES_OPTIONS='timeout:1 attempts:1' getent hosts example.com); echo "GETENT example.com rc=$? out=$out" &`,
      `out=$(RES_OPTIONS='timeout:1 attempts:1' getent hosts api.github.com); echo "GETENT api.github.com rc=$? out=$out" &`,
      'wait',
    ];
    const started = Date.now();
    const r = await execScript(a.c.name, PROBE_PRELUDE + lines.join('\n'), 90_000);
    record('direct probes', r);
    const probes = parseProbes(r.stdout);
    expect(Date.now() - started).toBeLessThan(60_000);
    expectNoAnswer(probes.get('outside-https'), `outside server ${outside!.ip}:8443 (https)`);
    expectNoAnswer(probes.get('outside-http'), `outside server ${outside!.ip}:8443 (http)`);
    expectNoAnswer(probes.get('gateway-port'), `session gateway ${a.c.gateway}:${port}`);
    expectNoAnswer(probes.get('hdi-port'), `host.docker.internal:${port}`);
    expectNoAnswer(probes.get('api-by-name'), 'api.github.com without the proxy');
    targets.forEach((ip, i) => expectNoAnswer(probes.get(`host-${i}`), `host address ${ip}:${port}`));
    // The session's gateway, where the upstream port is open, drops: the firewall, not a closed port.
    for (const name of ['gateway-port', 'hdi-port']) expect({ name, rc: probes.get(name)!.rc }).toEqual({ name, rc: 28 });
    for (const name of ['example.com', 'api.github.com']) {
      const m = new RegExp(`^GETENT ${name.replace(/\./g, '\\.')} rc=(\\d+) out=(.*)$`, 'm').exec(r.stdout);
      expect(m, `getent ${name} reported`).not.toBeNull();
      expect({ name, rc: m![1] === '0' ? 'resolved' : 'failed', out: m![2]!.trim() }).toEqual({ name, rc: 'failed', out: '' });
    }
    expect(github.requests.filter((q) => q.url.startsWith('/direct/'))).toEqual([]);
  }, 120_000);

  it('holds no real secret in docker inspect, labels, process environments or the container filesystem', async () => {
    for (const s of [a, b]) {
      const { raw, info } = await inspectContainer(s.c.name);
      outputs.push([`docker inspect ${s.c.name}`, raw]);
      expect(secretsIn(raw, SECRETS)).toEqual([]);
      const net = await dockerOk(['network', 'inspect', `airlock-${s.c.sessionId}`]);
      outputs.push([`docker network inspect ${s.c.sessionId}`, net]);
      expect(secretsIn(net, SECRETS)).toEqual([]);
      // Labels: the session id and the launcher pid, nothing else of ours; not even the proxy token.
      const ours = Object.entries(info.Config.Labels).filter(([k]) => k.startsWith('airlock'));
      expect(Object.fromEntries(ours)).toEqual({ 'airlock.session': s.c.sessionId, 'airlock.pid': String(s.cli.child.pid) });
      expect(JSON.stringify(info.Config.Labels)).not.toContain(s.proxyUrl.password);
      // No variable of the container holds a secret or names a secret source.
      expect(info.Config.Env.filter((e) => /^AIRLOCK_(GITHUB|GITLAB)_TOKEN=/.test(e))).toEqual([]);

      // Every process's environment, read inside the container.
      const environ = await execScript(s.c.name, "for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < \"$f\"; done 2>/dev/null");
      expect(environ.stdout).toContain(`AIRLOCK_SESSION=${s.c.sessionId}`);
      expect(secretsIn(environ.stdout, SECRETS)).toEqual([]);

      // The container's own filesystem: what was copied in and what it wrote (the session env).
      const fs = await secretsInContainerFs(info, SECRETS, `AIRLOCK_SESSION=${s.c.sessionId}`);
      expect(fs.canaryFound, `the search (${fs.method}) sees the container's files`).toBe(true);
      expect(fs.hits, fs.method).toEqual([]);
      // And from inside, over the writable places (the pattern comes on stdin, never as an argument).
      const grep = await docker(
        ['exec', '-i', s.c.name, 'grep', '-rlsaF', '-f', '/dev/stdin', '/etc', '/tmp', '/workspace', '/home', '/root', '/run', '/var'],
        { input: Object.values(SECRETS).join('\n') + '\n' },
      );
      expect(grep.stdout.trim(), "files holding a secret").toBe("");
      expect(grep.code, "grep found a match").not.toBe(0);
      // The bind-mounted workspace on the host.
      expect(secretsInTree(s.workspace, SECRETS)).toEqual([]);
    }
  }, 60_000);

  it('returns the exit code of the command and leaves no container, network or firewall rule behind', async () => {
    await Promise.all([finishSession(a.c.name, 0), finishSession(b.c.name, 3)]);
    const [ra, rb] = await Promise.all([waitExit(a.cli), waitExit(b.cli)]);
    record('session a', ra);
    record('session b', rb);
    expect(ra.code, ra.stderr).toBe(0);
    expect(rb.code, rb.stderr).toBe(3);
    for (const [r, s] of [
      [ra, a],
      [rb, b],
    ] as const) {
      expect(r.stdout).toContain('session-up');
      expect(r.stdout).toContain('session-done');
      const summary = sessionSummary(r.stderr);
      expect(summary?.id).toBe(s.c.sessionId);
      expect(await expectNoLeftovers(s.c.sessionId)).toEqual(NO_LEFTOVERS);
      expect((await docker(['inspect', s.c.name])).code).not.toBe(0);
      // The audit log shows the run, and no secret.
      const audit = parseAuditLines(readFileSync(summary!.audit, 'utf8'));
      expect(audit.some((l) => l.action === 'allow' && l.status === 200)).toBe(true);
      expect(audit.some((l) => l.action === 'deny' && l.host === 'evil.example')).toBe(true);
      expect(secretsInTree(s.stateDir, SECRETS)).toEqual([]);
    }
    // The proxy listeners are gone with the sessions.
    const open = await listeners();
    expect([...open.keys()].filter((k) => k === `${a.c.gateway}:${a.proxyUrl.port}` || k === `${b.c.gateway}:${b.proxyUrl.port}`)).toEqual([]);
  }, 90_000);
});

describeDocker('airlock run: command, output and workspace', () => {
  it('streams stdout and stderr while the command runs, returns its exit code, and the bind-mounted workspace is writable', async () => {
    const workspace = newWorkspace();
    writeFileSync(join(workspace, 'from-host.txt'), 'written on the host\n');
    const stateDir = newStateDir();
    const cli = spawnCli(
      runArgs(policyA, stateDir, ['--workspace', workspace, '-e', 'EXTRA_VAR=extra value'], [
        'sh',
        '-c',
        'echo to-stdout; echo to-stderr >&2; while [ ! -e /workspace/go ]; do sleep 0.1; done; ' +
          'echo "after-go $EXTRA_VAR"; cat /workspace/from-host.txt; echo written-in-container > /workspace/from-container.txt; exit 42',
      ]),
      { ...baseEnv, AIRLOCK_GITHUB_TOKEN: REAL_A },
    );
    // Output arrives while the command still runs (it waits for /workspace/go).
    await waitFor(() => cli.stdout().includes('to-stdout') && cli.stderr().includes('to-stderr'), 60_000, 'streamed output');
    expect(cli.exited()).toBe(false);
    expect(cli.stdout()).not.toContain('after-go');
    writeFileSync(join(workspace, 'go'), '');
    const r = await waitExit(cli);
    record('streams', r);
    expect(r.code, r.stderr).toBe(42);
    expect(r.stdout).toContain('to-stdout\n');
    expect(r.stdout).toContain('after-go extra value\n');
    expect(r.stdout).toContain('written on the host\n');
    expect(r.stdout).not.toContain('to-stderr');
    expect(r.stderr).toContain('to-stderr\n');
    expect(r.stderr).not.toContain('to-stdout');
    expect(readFileSync(join(workspace, 'from-container.txt'), 'utf8')).toBe('written-in-container\n');
    const summary = sessionSummary(r.stderr);
    expect(summary).not.toBeNull();
    expect(await expectNoLeftovers(summary!.id)).toEqual(NO_LEFTOVERS);
  }, 120_000);

  it('--copy copies the workspace in (the host copy stays untouched) and --copy-out copies the result back', async () => {
    const workspace = newWorkspace();
    mkdirSync(join(workspace, 'sub'));
    writeFileSync(join(workspace, 'in.txt'), 'original\n');
    writeFileSync(join(workspace, 'sub', 'nested.txt'), 'nested\n');
    const outDir = tmpDir('airlock-run-out-');
    scratch.push(outDir);
    const copyOut = join(outDir, 'result');
    mkdirSync(copyOut);
    const stateDir = newStateDir();
    const r = await runCli(
      runArgs(policyA, stateDir, ['--workspace', workspace, '--copy', '--copy-out', copyOut], [
        'sh',
        '-c',
        'cat /workspace/in.txt /workspace/sub/nested.txt; grep -q " /workspace " /proc/mounts && echo MOUNTED; ' +
          'echo changed > /workspace/in.txt; echo new > /workspace/out.txt; echo deeper > /workspace/sub/new.txt',
      ]),
      { env: { ...baseEnv, AIRLOCK_GITHUB_TOKEN: REAL_A }, timeoutMs: 120_000 },
    );
    record('copy', r);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('original\nnested\n');
    expect(r.stdout).not.toContain('MOUNTED');
    expect(readFileSync(join(workspace, 'in.txt'), 'utf8')).toBe('original\n');
    expect(existsSync(join(workspace, 'out.txt'))).toBe(false);
    expect(readFileSync(join(copyOut, 'in.txt'), 'utf8')).toBe('changed\n');
    expect(readFileSync(join(copyOut, 'out.txt'), 'utf8')).toBe('new\n');
    expect(readFileSync(join(copyOut, 'sub', 'nested.txt'), 'utf8')).toBe('nested\n');
    expect(readFileSync(join(copyOut, 'sub', 'new.txt'), 'utf8')).toBe('deeper\n');
    const summary = sessionSummary(r.stderr);
    expect(await expectNoLeftovers(summary!.id)).toEqual(NO_LEFTOVERS);
  }, 120_000);

  it('refuses to pass a secret source variable into the container, and cleans up what it had set up', async () => {
    const stateDir = newStateDir();
    const cli = spawnCli(runArgs(policyA, stateDir, ['-e', `AIRLOCK_GITHUB_TOKEN=${REAL_A}`], ['true']), {
      ...baseEnv,
      AIRLOCK_GITHUB_TOKEN: REAL_A,
    });
    const pid = cli.child.pid;
    const r = await waitExit(cli);
    record('secret source -e', r);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('AIRLOCK_GITHUB_TOKEN: that variable is a secret source of this policy');
    expect(secretsIn(r.stderr + r.stdout, SECRETS)).toEqual([]);
    expect(await dockerOk(['ps', '-a', '-q', '--filter', `label=airlock.pid=${pid}`])).toBe('');
    expect(await dockerOk(['network', 'ls', '-q', '--filter', `label=airlock.pid=${pid}`])).toBe('');
    // The refusal came after the network, proxy listener and firewall were set up: all undone.
    const ids = readdirSync(join(stateDir, 'sessions'));
    expect(ids).toHaveLength(1);
    expect(await leftovers(ids[0]!)).toEqual(NO_LEFTOVERS);
  }, 60_000);

  it('refuses -e of any variable whose value holds a secret (a URL with the token), naming it and not the value', async () => {
    const stateDir = newStateDir();
    const cli = spawnCli(runArgs(policyA, stateDir, ['-e', `REPO_URL=https://x-access-token:${REAL_A}@github.com/o/r.git`], ['true']), {
      ...baseEnv,
      AIRLOCK_GITHUB_TOKEN: REAL_A,
    });
    const pid = cli.child.pid;
    const r = await waitExit(cli);
    record('secret value -e', r);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('-e REPO_URL: its value holds a real secret');
    expect(secretsIn(r.stderr + r.stdout, SECRETS)).toEqual([]);
    expect(await dockerOk(['ps', '-a', '-q', '--filter', `label=airlock.pid=${pid}`])).toBe('');
    const ids = readdirSync(join(stateDir, 'sessions'));
    expect(ids).toHaveLength(1);
    expect(await leftovers(ids[0]!)).toEqual(NO_LEFTOVERS);
  }, 60_000);
});

describeDocker('airlock run: interrupted, kept', () => {
  it('SIGTERM to the launcher stops the container and removes everything of the session', async () => {
    const stateDir = newStateDir();
    const name = containerName('term');
    const cli = spawnCli(runArgs(policyA, stateDir, ['--name', name], ['sleep', '300']), { ...baseEnv, AIRLOCK_GITHUB_TOKEN: REAL_A });
    const c = await waitForSession(cli, name);
    expect((await leftovers(c.sessionId)).rules.length).toBeGreaterThan(0);
    cli.child.kill('SIGTERM');
    const r = await waitExit(cli, 30_000);
    record('sigterm', r);
    // The command was stopped (SIGTERM: 143); a clean exit after an interrupt would be 130.
    expect([130, 143], r.stderr).toContain(r.code);
    expect(sessionSummary(r.stderr)?.id).toBe(c.sessionId);
    expect(await leftovers(c.sessionId)).toEqual(NO_LEFTOVERS);
  }, 60_000);

  it('--keep leaves the stopped container for inspection (not its network or firewall), and gc leaves it too', async () => {
    const stateDir = newStateDir();
    const name = containerName('keep');
    try {
      const r = await runCli(runArgs(policyA, stateDir, ['--keep', '--name', name], ['sh', '-c', 'env > /tmp/kept-env; exit 4']), {
        env: { ...baseEnv, AIRLOCK_GITHUB_TOKEN: REAL_A },
        timeoutMs: 60_000,
      });
      record('keep', r);
      expect(r.code, r.stderr).toBe(4);
      const id = sessionSummary(r.stderr)!.id;
      const { info, raw } = await inspectContainer(name);
      expect(info.State.Running).toBe(false);
      expect(info.Config.Labels['airlock.session']).toBe(id);
      expect(secretsIn(raw, SECRETS)).toEqual([]);
      const left = await leftovers(id);
      expect(left).toEqual({ containers: [info.Id.slice(0, 12)], networks: [], rules: [] });
      // `airlock gc` (which every `airlock run` also does at start) does not take it away.
      const gc = await runCli(['gc'], { env: baseEnv, timeoutMs: 60_000 });
      record('gc after keep', gc);
      expect(gc.code, gc.stderr).toBe(0);
      expect((await docker(['inspect', '--type', 'container', name])).code).toBe(0);
      const fs = await secretsInContainerFs(info, SECRETS, `AIRLOCK_SESSION=${id}`);
      expect(fs.canaryFound, fs.method).toBe(true);
      expect(fs.hits).toEqual([]);
    } finally {
      await docker(['rm', '-f', name]);
    }
  }, 90_000);
});

describeDocker('airlock run: launcher killed with SIGKILL, then airlock gc', () => {
  it('leaves its container, network and firewall chain behind, and airlock gc removes them all', async () => {
    const stateDir = newStateDir();
    const name = containerName('killed');
    const cli = spawnCli(runArgs(policyA, stateDir, ['--name', name], ['sleep', '300']), { ...baseEnv, AIRLOCK_GITHUB_TOKEN: REAL_A });
    const c = await waitForSession(cli, name);
    const before = await leftovers(c.sessionId);
    expect(before.containers).toHaveLength(1);
    expect(before.networks).toHaveLength(1);
    expect(before.rules.length).toBeGreaterThan(0);

    cli.child.kill('SIGKILL');
    const r = await waitExit(cli, 15_000);
    record('killed launcher', r);
    expect(r.signal).toBe('SIGKILL');
    // Nobody cleaned up: everything is still there (the container even still runs).
    const left = await leftovers(c.sessionId);
    expect(left.containers).toHaveLength(1);
    expect(left.networks).toHaveLength(1);
    expect(left.rules).toEqual(before.rules);
    expect((await inspectContainer(name)).info.State.Running).toBe(true);

    const gc = await runCli(['gc'], { env: baseEnv, timeoutMs: 60_000 });
    record('gc', gc);
    expect(gc.code, gc.stderr).toBe(0);
    expect(gc.stderr).toMatch(/airlock gc: removed [1-9]\d* container\(s\), [1-9]\d* network\(s\), [1-9]\d* firewall chain\(s\)/);
    expect(await leftovers(c.sessionId)).toEqual(NO_LEFTOVERS);
    // A second gc finds nothing of this session.
    const again = await runCli(['gc'], { env: baseEnv, timeoutMs: 60_000 });
    expect(again.code).toBe(0);
    expect(await leftovers(c.sessionId)).toEqual(NO_LEFTOVERS);
  }, 120_000);
});

describeDocker('airlock run --network-mode bridge: not root', () => {
  const asNobody = (args: string[]) =>
    runProcess('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, CLI_PATH, ...args], {
      env: { ...baseEnv, HOME: '/nonexistent' },
      cwd: '/',
      timeoutMs: 30_000,
    });

  it('refuses without --allow-host-ports, with the firewall message, before touching Docker', async () => {
    const stateDir = join(work, 'nobody-state');
    const r = await asNobody(['run', '--network-mode', 'bridge', '--policy', policyA, '--image', image, '--state-dir', stateDir, '--', 'true']);
    record('not root', r);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('airlock run needs root to close the host side');
    expect(r.stderr).toContain('--allow-host-ports');
    expect(r.stderr).not.toContain('Docker engine');
    expect(existsSync(stateDir)).toBe(false);
  }, 60_000);

  it('with --allow-host-ports gets past that check (and here stops at the Docker socket it may not use)', async () => {
    const r = await asNobody(['run', '--network-mode', 'bridge', '--allow-host-ports', '--policy', policyA, '--image', image, '--state-dir', join(work, 'nobody-state2'), '--', 'true']);
    record('not root, allow host ports', r);
    expect(r.code).toBe(2);
    expect(r.stderr).not.toContain('needs root');
    expect(r.stderr).toMatch(/Docker engine not reachable at \S+.*EACCES/);
    expect(r.stderr).not.toContain('function');
  }, 60_000);
});

describeDocker('airlock run --daemon: sessions through a running airlock proxy', () => {
  let daemon: LiveCli | undefined;
  let stateDir: string;

  afterAll(async () => {
    if (daemon && !daemon.exited()) {
      daemon.child.kill('SIGTERM');
      await waitExit(daemon, 15_000).catch(() => {});
    }
  });

  it('runs two container sessions in the one daemon process, with its secret, and cleans up', async () => {
    stateDir = newStateDir();
    const listen = `127.0.0.1:${await freePort()}`;
    daemon = spawnCli(
      [
        'proxy', '--policy', policyA, '--listen', listen, '--state-dir', stateDir,
        '--resolve', `api.github.com:443:127.0.0.1:${github.port}`, '--upstream-ca', pki.caFile,
      ],
      { ...baseEnv, AIRLOCK_GITHUB_TOKEN: REAL_D },
    );
    await waitFor(() => existsSync(join(stateDir, 'admin.sock')) || daemon!.exited(), 30_000, 'the daemon admin socket');
    expect(daemon.exited(), daemon.stderr()).toBe(false);

    // The launchers have no secret at all: the daemon resolves it.
    const sessions = [0, 1].map(() => {
      const workspace = newWorkspace();
      const name = containerName('daemon');
      const cli = spawnCli(
        ['run', '--daemon', '--network-mode', 'bridge', '--state-dir', stateDir, '--policy', policyA, '--image', image, '--workspace', workspace, '--name', name, '--', ...sessionCommand()],
        baseEnv,
      );
      return { cli, workspace, name };
    });
    const containers = await Promise.all(sessions.map((s) => waitForSession(s.cli, s.name, join(s.workspace, 'ready'))));
    const [c0, c1] = containers as [SessionContainer, SessionContainer];
    expect(c0.sessionId).not.toBe(c1.sessionId);

    // Both sessions live in the daemon: it lists them and owns both gateway listeners.
    const ls = await runCli(['session', 'ls', '--state-dir', stateDir], { env: baseEnv });
    expect(ls.stdout).toContain(c0.sessionId);
    expect(ls.stdout).toContain(c1.sessionId);
    const open = await listeners();
    for (const [i, c] of containers.entries()) {
      const port = new URL(readFileSync(join(sessions[i]!.workspace, 'proxy-url'), 'utf8').trim()).port;
      expect(open.get(`${c.gateway}:${port}`), `listener of ${c.sessionId}`).toEqual([daemon.child.pid]);
      expect(c.launcherPid).toBe(String(sessions[i]!.cli.child.pid));
    }
    for (const s of sessions) expect([...open.values()].flat()).not.toContain(s.cli.child.pid);

    // Each works: 200 with the daemon's real token swapped in, different placeholders.
    const placeholders: string[] = [];
    for (const [i, c] of containers.entries()) {
      const r = await execScript(
        c.name,
        `printenv GH_TOKEN; curl -sS --max-time 15 -o /dev/null -w 'HTTP %{http_code}\\n' -H "Authorization: Bearer $GH_TOKEN" https://api.github.com/daemon/${i}; ` +
          `curl -sS --max-time 15 -o /dev/null -w 'EVIL %{http_connect}\\n' https://evil.example/daemon/${i}`,
      );
      record(`daemon session ${i}`, r);
      expect(r.stdout, r.stderr).toContain('HTTP 200');
      expect(r.stdout).toContain('EVIL 403');
      placeholders.push(r.stdout.split('\n')[0]!);
      expect(requestsTo(github, `/daemon/${i}`).map((q) => q.headers.authorization)).toEqual([`Bearer ${REAL_D}`]);
      const { raw } = await inspectContainer(c.name);
      expect(secretsIn(raw, SECRETS)).toEqual([]);
    }
    expect(placeholders[0]).not.toBe(placeholders[1]);
    for (const p of placeholders) expect(p).toMatch(/\S{12,}/);

    await Promise.all(containers.map((c, i) => finishSession(c.name, i + 5)));
    const results = await Promise.all(sessions.map((s) => waitExit(s.cli)));
    results.forEach((r, i) => {
      record(`daemon run ${i}`, r);
      expect(r.code, r.stderr).toBe(i + 5);
    });
    for (const c of containers) expect(await expectNoLeftovers(c.sessionId)).toEqual(NO_LEFTOVERS);
    // The daemon dropped both sessions and their listeners, and keeps running.
    const after = await runCli(['session', 'ls', '--state-dir', stateDir], { env: baseEnv });
    expect(after.stdout).not.toContain(c0.sessionId);
    expect(after.stdout).not.toContain(c1.sessionId);
    const openAfter = await listeners();
    for (const c of containers) expect([...openAfter.keys()].filter((k) => k.startsWith(`${c.gateway}:`))).toEqual([]);
    expect(daemon.exited()).toBe(false);

    daemon.child.kill('SIGTERM');
    const d = await waitExit(daemon, 15_000);
    record('daemon', d);
    expect(secretsInTree(stateDir, SECRETS)).toEqual([]);
  }, 180_000);
});

describeDocker('airlock run --daemon: launcher killed with SIGKILL', () => {
  let daemon: LiveCli | undefined;
  let stateDir: string;

  beforeAll(async () => {
    stateDir = newStateDir();
    const listen = `127.0.0.1:${await freePort()}`;
    daemon = spawnCli(
      [
        'proxy', '--policy', policyA, '--listen', listen, '--state-dir', stateDir,
        '--resolve', `api.github.com:443:127.0.0.1:${github.port}`, '--upstream-ca', pki.caFile,
      ],
      { ...baseEnv, AIRLOCK_GITHUB_TOKEN: REAL_D },
    );
    await waitFor(() => existsSync(join(stateDir, 'admin.sock')) || daemon!.exited(), 30_000, 'the daemon admin socket');
    expect(daemon.exited(), daemon.stderr()).toBe(false);
  }, 60_000);

  afterAll(async () => {
    if (daemon && !daemon.exited()) {
      daemon.child.kill('SIGTERM');
      record('daemon of killed launchers', await waitExit(daemon, 15_000).catch(() => ({ stdout: '', stderr: daemon!.stderr() })));
    }
  });

  /** A `run --daemon` session up and running, with the port of its listener in the daemon. */
  async function launch(): Promise<{ cli: LiveCli; c: SessionContainer; address: string }> {
    const workspace = newWorkspace();
    const name = containerName('daemon-killed');
    const cli = spawnCli(
      ['run', '--daemon', '--network-mode', 'bridge', '--state-dir', stateDir, '--policy', policyA, '--image', image, '--workspace', workspace, '--name', name, '--', ...sessionCommand()],
      baseEnv,
    );
    const c = await waitForSession(cli, name, join(workspace, 'ready'));
    const port = new URL(readFileSync(join(workspace, 'proxy-url'), 'utf8').trim()).port;
    const address = `${c.gateway}:${port}`;
    expect((await listeners()).get(address), `listener of ${c.sessionId}`).toEqual([daemon!.child.pid]);
    expect((await runCli(['session', 'ls', '--state-dir', stateDir], { env: baseEnv })).stdout).toContain(c.sessionId);
    return { cli, c, address };
  }

  async function kill9(cli: LiveCli): Promise<void> {
    cli.child.kill('SIGKILL');
    const r = await waitExit(cli, 15_000);
    record('killed daemon launcher', r);
    expect(r.signal).toBe('SIGKILL');
  }

  const listed = async () => (await runCli(['session', 'ls', '--state-dir', stateDir], { env: baseEnv })).stdout;

  it('the daemon ends the session by itself (its lease closed): no session, no listener; airlock gc then removes container, network and chain', async () => {
    const { cli, c, address } = await launch();
    await kill9(cli);
    await waitFor(async () => !(await listed()).includes(c.sessionId), 10_000, `the daemon to drop ${c.sessionId}`);
    expect([...(await listeners()).keys()]).not.toContain(address);
    expect(daemon!.stderr()).toContain('session removed: its launcher closed its lease');
    // The Docker side is the launcher's to clean up, and it was killed: still there for gc.
    expect((await inspectContainer(c.name)).info.State.Running).toBe(true);

    const gc = await runCli(['gc'], { env: { ...baseEnv, AIRLOCK_STATE_DIR: stateDir }, timeoutMs: 60_000 });
    record('gc after killed daemon launcher', gc);
    expect(gc.code, gc.stderr).toBe(0);
    expect(await leftovers(c.sessionId)).toEqual(NO_LEFTOVERS);
    expect(await listed()).not.toContain(c.sessionId);
    expect(daemon!.exited()).toBe(false);
  }, 180_000);

  it('kill -9, then airlock gc at once: nothing of the session in session ls, its listener closed, no container, network or chain', async () => {
    const { cli, c, address } = await launch();
    await kill9(cli);
    const gc = await runCli(['gc'], { env: { ...baseEnv, AIRLOCK_STATE_DIR: stateDir }, timeoutMs: 60_000 });
    record('gc right after killed daemon launcher', gc);
    expect(gc.code, gc.stderr).toBe(0);
    expect(await listed()).not.toContain(c.sessionId);
    expect([...(await listeners()).keys()]).not.toContain(address);
    expect(await leftovers(c.sessionId)).toEqual(NO_LEFTOVERS);
    // The daemon still serves: a new session works.
    const next = await launch();
    const r = await execScript(next.c.name, `curl -sS --max-time 15 -o /dev/null -w 'HTTP %{http_code}\\n' https://api.github.com/after-kill`);
    expect(r.stdout, r.stderr).toContain('HTTP 200');
    await finishSession(next.c.name, 0);
    expect((await waitExit(next.cli)).code).toBe(0);
    expect(await leftovers(next.c.sessionId)).toEqual(NO_LEFTOVERS);
  }, 180_000);
});

describeDocker('airlock run: no real secret in any output', () => {
  it('never printed a secret, nor wrote one to a state dir', async () => {
    // Runs last (a file runs its tests in order): everything recorded above.
    const hits = outputs.filter(([, text]) => secretsIn(text, SECRETS).length > 0).map(([label, text]) => `${label}: ${secretsIn(text, SECRETS).join(',')}`);
    expect(hits).toEqual([]);
    for (const dir of stateDirs) expect(secretsInTree(dir, SECRETS)).toEqual([]);
  });
});
