// `airlock run` (network mode none) against rootless Docker, as an unprivileged user this test
// creates (and removes), with a dockerd of that user's own (Debian's dockerd-rootless.sh under
// rootlesskit, vfs storage, data and runtime dirs in the user's home). Needs root (to make the
// user), a Docker engine, and Debian's `rootlesskit` and `uidmap` (missing ones fail the suite; no engine: skipped loudly).
// The images are copied from the system engine into the user's engine: the relay, and a small
// curl image built here.
//
// rootlesskit gives dockerd a network namespace of its own through slirp4netns when that is
// installed and the user may open /dev/net/tun; otherwise (no udev to make it 0666), dockerd shares the host's network
// namespace instead (rootlesskit --net=host) without a bridge or iptables: the sessions have no
// network either way, so Airlock's side is the same.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { describeNeeding, dockerAvailable, ensureRelayImage } from '../helpers/docker.js';
import { CLI_PATH, createTestPki, runProcess, sleep, startHttpsUpstream, waitFor } from '../helpers/servers.js';
import type { TestPki, TestUpstream } from '../helpers/servers.js';
import { escapeProbe } from './run-helpers.js';
import { buildCurlImage, TestUser } from './test-user.js';

const RUN_ID = randomBytes(3).toString('hex');
const USER = `airlock-rd${RUN_ID}`;
const CURL_IMAGE = `airlock-test-curl:${RUN_ID}`;
// Debian's docker.io ships it in contrib; docker-ce's rootless extras in /usr/bin.
const SETUP_SCRIPT = ['/usr/share/docker.io/contrib/dockerd-rootless.sh', '/usr/bin/dockerd-rootless.sh'].find((f) => existsSync(f)) ?? '';

/** What this test lacks here, or null. */
function rootlessDockerMissing(): string | null {
  if (process.getuid?.() !== 0) return 'not root (the test makes a user)';
  if (!dockerAvailable()) return 'no Docker engine answers';
  const absent = ['/usr/bin/rootlesskit', '/usr/bin/newuidmap', '/usr/sbin/dockerd'].filter((f) => !existsSync(f));
  if (SETUP_SCRIPT === '') absent.push('dockerd-rootless.sh');
  return absent.length > 0 ? `missing ${absent.join(', ')}` : null;
}

const describeRootless = (name: string, fn: () => void) => describeNeeding(name, rootlessDockerMissing(), fn);

let pki: TestPki;
let github: TestUpstream;
let hostPort: net.Server;
let home: string;
let socket: string;
let daemonLog = '';
let user: TestUser | undefined;

/** The docker CLI as the test user, against the user's engine. */
function userDocker(args: readonly string[], timeoutMs = 120_000) {
  return user!.run('docker', ['-H', `unix://${socket}`, ...args], { timeoutMs });
}

/** iptables/ip6tables rules of the host, without counters. */
async function hostRules(): Promise<string[]> {
  const out: string[] = [];
  for (const cmd of ['iptables-save', 'ip6tables-save']) {
    const r = await runProcess(cmd, [], { timeoutMs: 15_000 });
    out.push(...r.stdout.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => `${cmd}: ${l.replace(/\[\d+:\d+\]/, '')}`));
  }
  return out;
}

beforeAll(async () => {
  if (rootlessDockerMissing() !== null) return;
  pki = await createTestPki();
  chmodSync(pki.dir, 0o755);
  chmodSync(pki.caFile, 0o644);
  github = await startHttpsUpstream({ pki, names: ['api.github.com'] });
  hostPort = net.createServer((s) => s.end('host port answered\n'));
  await new Promise<void>((resolve) => hostPort.listen({ host: '0.0.0.0', port: 0 }, resolve));

  user = await TestUser.create(USER, 'airlock-rdocker-home-');
  home = user.home;
  const runtimeDir = user.runtimeDir;
  socket = join(runtimeDir, 'docker.sock');

  // slirp4netns needs /dev/net/tun open to the user; without it, the host's network namespace.
  const slirp = existsSync('/usr/bin/slirp4netns') && (await user.run('sh', ['-c', 'exec 3<>/dev/net/tun'])).code === 0;
  const netArgs = slirp ? [] : ['--bridge=none', '--iptables=false', '--ip6tables=false'];
  const netEnv: Record<string, string> = slirp ? {} : { DOCKERD_ROOTLESS_ROOTLESSKIT_NET: 'host', DOCKERD_ROOTLESS_ROOTLESSKIT_PORT_DRIVER: 'none' };
  console.log(`rootless dockerd network: ${slirp ? 'slirp4netns' : 'host namespace (no slirp4netns, or /dev/net/tun not open to users), no bridge'}`);
  const logFd = openSync(join(home, 'dockerd.log'), 'w');
  daemonLog = join(home, 'dockerd.log');
  // Ended with the user's other processes in afterAll.
  user.start(
    SETUP_SCRIPT,
    [
      '--storage-driver', 'vfs', '--data-root', join(home, 'data'), '--exec-root', join(runtimeDir, 'docker'),
      '--pidfile', join(runtimeDir, 'docker.pid'), '-H', `unix://${socket}`, ...netArgs,
    ],
    ['ignore', logFd, logFd],
    netEnv,
  );
  closeSync(logFd);
  await waitFor(() => existsSync(socket), 60_000, `the rootless dockerd socket (log: ${daemonLog})`);
  for (let i = 0; ; i++) {
    const info = await userDocker(['info', '--format', '{{json .SecurityOptions}}']);
    if (info.code === 0) {
      if (!info.stdout.includes('name=rootless')) throw new Error(`the user's dockerd is not rootless: ${info.stdout}`);
      break;
    }
    if (i > 100) throw new Error(`the rootless dockerd does not answer: ${info.stderr}`);
    await sleep(200);
  }

  const relay = await ensureRelayImage();
  // The session image is removed at the end.
  await buildCurlImage(CURL_IMAGE, 'airlock-test=rootless-docker');
  for (const image of [relay, CURL_IMAGE]) await user.loadImage(image, (archive) => ['docker', ['-H', `unix://${socket}`, 'load', '-i', archive]]);
}, 30 * 60_000);

afterAll(async () => {
  await github?.close();
  await new Promise((resolve) => (hostPort ? hostPort.close(resolve) : resolve(undefined)));
  if (user && socket && existsSync(socket)) {
    const ids = (await userDocker(['ps', '-a', '-q']).catch(() => ({ stdout: '' }))).stdout.split('\n').filter(Boolean);
    if (ids.length) await userDocker(['rm', '-f', '-v', ...ids]).catch(() => {});
  }
  // rootlesskit, dockerd, containerd and shims go with the user; the data root is removed as root.
  await user?.remove();
  if (pki) rmSync(pki.dir, { recursive: true, force: true });
  if (rootlessDockerMissing() === null) await runProcess('docker', ['rmi', '-f', CURL_IMAGE]).catch(() => {});
}, 300_000);

describeRootless('airlock run on rootless Docker (unprivileged user, its own dockerd)', () => {
  it('runs a session with only lo, proxy traffic through the relay, no host port, no iptables rule, and cleans up', async () => {
    const policy = join(home, 'policy.yaml');
    writeFileSync(policy, 'version: 1\nname: rootless-docker\nallow:\n  - host: api.github.com\n', { mode: 0o644 });
    const stateDir = join(home, 'state');
    const probe = escapeProbe('https://api.github.com/from-rootless-docker', (hostPort.address() as net.AddressInfo).port);
    const before = await hostRules();
    const r = await user!.run(
      process.execPath,
      [
        CLI_PATH, 'run', '--engine', `unix://${socket}`, '--policy', policy, '--image', CURL_IMAGE, '--relay-image', await ensureRelayImage(),
        '--state-dir', stateDir, '--resolve', `api.github.com:443:127.0.0.1:${github.port}`, '--upstream-ca', pki.caFile,
        '--', 'sh', '-c', probe.script,
      ],
      { timeoutMs: 600_000 },
    );
    const after = await hostRules();
    expect(r.code, r.stderr + r.stdout).toBe(0);
    probe.expectContained(r.stdout);
    expect(github.requests.map((q) => q.url)).toContain('/from-rootless-docker');
    const session = /airlock: session (s-[0-9a-f]+)/.exec(r.stderr)?.[1];
    expect(session, r.stderr).toBeDefined();
    // No rule of this session's on the host (the launcher is not root and the engine is the
    // user's); other tests on this shared host may add rules of their own meanwhile.
    const added = after.filter((l) => !before.includes(l));
    console.log(`host iptables/ip6tables rules: ${before.length} before, ${after.length} after; new lines: ${added.length ? added.join(' | ') : 'none'}`);
    expect(after.filter((l) => l.includes(session!))).toEqual([]);
    // Nothing left in the user's engine, and the socket directory is gone.
    const ps = await userDocker(['ps', '-a', '-q']);
    expect(ps.code, ps.stderr).toBe(0);
    expect(ps.stdout.trim()).toBe('');
    const sessions = readdirSync(join(stateDir, 'sessions'));
    expect(sessions).toEqual([session]);
    expect(existsSync(join(stateDir, 'sessions', session!, 'relay'))).toBe(false);
  }, 900_000);

  it('with --user 0:0 (container root is the user), writes the workspace as the user', async () => {
    // The default session uid maps to a subordinate id on the host, which cannot write the user's
    // files; container root is the user itself.
    const policy = join(home, 'policy.yaml');
    const workspace = join(home, 'ws');
    mkdirSync(workspace);
    chownSync(workspace, user!.uid, user!.gid);
    const r = await user!.run(
      process.execPath,
      [
        CLI_PATH, 'run', '--engine', `unix://${socket}`, '--policy', policy, '--image', CURL_IMAGE, '--relay-image', await ensureRelayImage(),
        '--state-dir', join(home, 'state-ws'), '--workspace', workspace, '--user', '0:0',
        '--', 'sh', '-c', 'echo written > /workspace/out.txt',
      ],
      { timeoutMs: 600_000 },
    );
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(readFileSync(join(workspace, 'out.txt'), 'utf8')).toBe('written\n');
    expect(statSync(join(workspace, 'out.txt')).uid).toBe(user!.uid);
    expect((await userDocker(['ps', '-a', '-q'])).stdout.trim()).toBe('');
  }, 600_000);
});
