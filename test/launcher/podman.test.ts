// `airlock run` (network mode none) against rootless Podman, through its Docker-compatible API
// socket, as an unprivileged user this test creates (and removes). Needs root (to make the user)
// and Debian's `podman` and `uidmap` (missing ones fail the suite; no engine: skipped loudly). The images are copied from the
// Docker engine into the user's Podman store: the relay, and a small curl image built here.
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { describeNeeding, dockerAvailable, ensureRelayImage } from '../helpers/docker.js';
import { CLI_PATH, createTestPki, runProcess, startHttpsUpstream, waitFor } from '../helpers/servers.js';
import type { TestPki, TestUpstream } from '../helpers/servers.js';
import { escapeProbe } from './run-helpers.js';
import { buildCurlImage, TestUser } from './test-user.js';

const RUN_ID = randomBytes(3).toString('hex');
const USER = `airlock-pm${RUN_ID}`;
const CURL_IMAGE = `airlock-test-curl:${RUN_ID}`;

/** What this test lacks here, or null. */
function podmanMissing(): string | null {
  if (process.getuid?.() !== 0) return 'not root (the test makes a user)';
  if (!dockerAvailable()) return 'no Docker engine answers';
  const absent = ['/usr/bin/podman', '/usr/bin/newuidmap'].filter((f) => !existsSync(f));
  return absent.length > 0 ? `missing ${absent.join(', ')}` : null;
}

const describePodman = (name: string, fn: () => void) => describeNeeding(name, podmanMissing(), fn);

let pki: TestPki;
let github: TestUpstream;
let hostPort: net.Server;
let home: string;
let socket: string;
let service: ChildProcess | undefined;
let user: TestUser | undefined;

beforeAll(async () => {
  if (podmanMissing() !== null) return;
  pki = await createTestPki();
  chmodSync(pki.dir, 0o755);
  chmodSync(pki.caFile, 0o644);
  github = await startHttpsUpstream({ pki, names: ['api.github.com'] });
  hostPort = net.createServer((s) => s.end('host port answered\n'));
  await new Promise<void>((resolve) => hostPort.listen({ host: '0.0.0.0', port: 0 }, resolve));

  user = await TestUser.create(USER, 'airlock-podman-home-');
  home = user.home;
  socket = join(user.runtimeDir, 'podman.sock');
  service = user.start('podman', ['system', 'service', '--time=0', `unix://${socket}`]);
  await waitFor(() => existsSync(socket), 60_000, 'the podman API socket');

  const relay = await ensureRelayImage();
  // The session image is removed at the end.
  await buildCurlImage(CURL_IMAGE, 'airlock-test=podman');
  for (const image of [relay, CURL_IMAGE]) await user.loadImage(image, (archive) => ['podman', ['load', '-i', archive]]);
}, 30 * 60_000);

afterAll(async () => {
  await github?.close();
  await new Promise((resolve) => (hostPort ? hostPort.close(resolve) : resolve(undefined)));
  if (user) await user.run('podman', ['rm', '-a', '-f'], { timeoutMs: 120_000 }).catch(() => {});
  if (service?.pid) {
    service.kill('SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 1_000));
  }
  await user?.remove();
  if (pki) rmSync(pki.dir, { recursive: true, force: true });
  if (podmanMissing() === null) await runProcess('docker', ['rmi', '-f', CURL_IMAGE]).catch(() => {});
}, 300_000);

describePodman('airlock run on rootless Podman (Docker-compatible socket, unprivileged user)', () => {
  it('runs a session with only lo, proxy traffic through the relay, no host port, and cleans up', async () => {
    const policy = join(home, 'policy.yaml');
    writeFileSync(policy, 'version: 1\nname: podman\nallow:\n  - host: api.github.com\n', { mode: 0o644 });
    const stateDir = join(home, 'state');
    const probe = escapeProbe('https://api.github.com/from-podman', (hostPort.address() as net.AddressInfo).port);
    const r = await user!.run(
      process.execPath,
      [
        CLI_PATH, 'run', '--engine', socket, '--policy', policy, '--image', CURL_IMAGE, '--relay-image', (await ensureRelayImage()),
        '--state-dir', stateDir, '--resolve', `api.github.com:443:127.0.0.1:${github.port}`, '--upstream-ca', pki.caFile,
        '--', 'sh', '-c', probe.script,
      ],
      { timeoutMs: 600_000 },
    );
    expect(r.code, r.stderr + r.stdout).toBe(0);
    probe.expectContained(r.stdout);
    expect(github.requests.map((q) => q.url)).toContain('/from-podman');
    // Nothing left in the user's engine, and the socket directory is gone.
    const ps = await user!.run('podman', ['ps', '-a', '-q']);
    expect(ps.stdout.trim()).toBe('');
    const sessions = readdirSync(join(stateDir, 'sessions'));
    expect(sessions).toHaveLength(1);
    expect(existsSync(join(stateDir, 'sessions', sessions[0]!, 'relay'))).toBe(false);
  }, 900_000);
});
