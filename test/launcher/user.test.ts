// Who a session container runs as: never root unless `--user 0:0` asks for it. The rules without
// Docker, then `airlock run` and `airlock doctor` started by root (no SUDO_UID) against small
// images built here: one with a named non-root USER, one without USER, one with `USER root`.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import { chooseSessionUser, parseUserFlag, readImageUser, UNPRIVILEGED_USER, workspaceAccessNotice } from '../../src/launcher/user.js';
import type { ImageUser } from '../../src/launcher/user.js';
import { buildTestImage, describeNeeding, ensureRelayImage, removeTestImages } from '../helpers/docker.js';
import { rmTmp, runCli, runProcess, tmpDir } from '../helpers/servers.js';
import { expectNoLeftovers, NO_LEFTOVERS, sessionSummary } from './run-helpers.js';

const ROOT = { uid: 0, gid: 0 };
const never = async (): Promise<ImageUser> => {
  throw new Error('the image must not be consulted');
};
const image = (u: ImageUser) => async () => u;

describe('the session user', () => {
  it('is --user when given; root only then, with a warning', async () => {
    expect(await chooseSessionUser('1000:1000', ROOT, never)).toEqual({ user: '1000:1000' });
    const root = await chooseSessionUser('0:0', ROOT, never);
    expect(root.user).toBe('0:0');
    expect(root.warning).toMatch(/--user 0:0: the session runs as root inside the container/);
    expect((await chooseSessionUser('0', { uid: 1000, gid: 1000 }, never)).warning).toMatch(/root/);
  });

  it('is SUDO_UID:SUDO_GID under sudo and the caller when not root, without looking at the image', async () => {
    expect(await chooseSessionUser(undefined, { ...ROOT, sudoUid: '1234', sudoGid: '5678' }, never)).toEqual({ user: '1234:5678' });
    expect(await chooseSessionUser(undefined, { uid: 1001, gid: 1002 }, never)).toEqual({ user: '1001:1002' });
  });

  it("is the image's non-root user for root without sudo, else a fixed unprivileged uid, never 0", async () => {
    const named = await chooseSessionUser(undefined, ROOT, image({ declared: 'agent', uid: 1234, gid: 2345 }));
    expect(named.user).toBe('1234:2345');
    expect(named.why).toMatch(/the image's user agent \(1234:2345\)/);
    for (const u of [{ declared: '' }, { declared: 'root', uid: 0, gid: 0 }, { declared: '0:0', uid: 0, gid: 0 }, { declared: 'ghost' }]) {
      const chosen = await chooseSessionUser(undefined, ROOT, image(u));
      expect(chosen.user, JSON.stringify(u)).toBe(UNPRIVILEGED_USER);
      expect(chosen.why).toMatch(/started by root without sudo/);
    }
    expect(UNPRIVILEGED_USER.startsWith('0:')).toBe(false);
  });

  it('refuses a --user that is not UID or UID:GID in numbers', () => {
    for (const bad of ['root', '1000:', ':1000', '1000:1000:1', 'agent:agent', '-1']) {
      expect(() => parseUserFlag(bad), bad).toThrow(/expected UID or UID:GID in numbers/);
    }
    expect(parseUserFlag('1000')).toEqual({ uid: 1000 });
  });

  it("says when a bind-mounted workspace is not writable by the session's uid, and how to fix it", () => {
    const dir = tmpDir('airlock-user-ws-');
    try {
      chmodSync(dir, 0o755);
      const notice = workspaceAccessNotice(dir, '4321:4321');
      // Owned by whoever runs the test: writable by uid 4321 only through the mode bits.
      expect(notice).toMatch(/is not writable by the session's uid 4321: chown -R 4321:4321 it, pass --copy --copy-out DIR, or pick the uid with --user/);
      chmodSync(dir, 0o777);
      expect(workspaceAccessNotice(dir, '4321:4321')).toBeUndefined();
    } finally {
      rmTmp(dir);
    }
  });
});

const RUN_ID = randomBytes(3).toString('hex');
const LABEL = `airlock-test=user-${RUN_ID}`;
const NAMED = `airlock-test-user-named:${RUN_ID}`;
const NONE = `airlock-test-user-none:${RUN_ID}`;
const ROOTUSER = `airlock-test-user-root:${RUN_ID}`;
const SLOW = 15 * 60_000;

const isRoot = process.getuid?.() === 0;
describeNeeding('airlock run and doctor started by root without sudo', isRoot ? null : 'not root (the test starts airlock run as root)', () => {
  let relayImage: string;
  let work: string;
  let policy: string;
  let baseEnv: NodeJS.ProcessEnv;
  const docker = new Docker();

  beforeAll(async () => {
    relayImage = await ensureRelayImage();
    await buildTestImage(NAMED, 'FROM debian:bookworm-slim\nRUN groupadd -g 2345 crew && useradd -u 1234 -g crew -m agent && mkdir -m 1777 /workspace\nUSER agent\n', LABEL);
    await buildTestImage(NONE, 'FROM debian:bookworm-slim\nRUN mkdir -m 1777 /workspace\n', LABEL);
    await buildTestImage(ROOTUSER, 'FROM debian:bookworm-slim\nUSER root\n', LABEL);
    work = tmpDir('airlock-user-test-');
    chmodSync(work, 0o755);
    policy = join(work, 'policy.yaml');
    writeFileSync(policy, 'version: 1\nname: user-test\nallow:\n  - host: api.github.com\n', { mode: 0o644 });
    baseEnv = { ...process.env };
    for (const name of Object.keys(baseEnv)) if (/^AIRLOCK_|_PROXY$|^(http|https|all|no)_proxy$|^DOCKER_HOST$|^SUDO_/i.test(name)) delete baseEnv[name];
  }, SLOW);

  afterAll(async () => {
    await removeTestImages(LABEL);
    rmTmp(work);
  }, 120_000);

  async function run(img: string, extra: string[], command: string[]) {
    const stateDir = join(work, `state-${randomBytes(3).toString('hex')}`);
    const r = await runCli(['run', '--policy', policy, '--image', img, '--relay-image', relayImage, '--state-dir', stateDir, ...extra, '--', ...command], {
      env: baseEnv,
      timeoutMs: 180_000,
    });
    const summary = sessionSummary(r.stderr);
    expect(summary, r.stderr).not.toBeNull();
    expect(await expectNoLeftovers(summary!.id)).toEqual(NO_LEFTOVERS);
    return r;
  }

  it("reads the image's USER, resolving names through the image's own /etc/passwd and /etc/group", async () => {
    expect(await readImageUser(docker, NAMED)).toEqual({ declared: 'agent', uid: 1234, gid: 2345 });
    expect(await readImageUser(docker, NONE)).toEqual({ declared: '' });
    expect(await readImageUser(docker, ROOTUSER)).toEqual({ declared: 'root', uid: 0, gid: 0 });
    // Reading left no container behind.
    expect((await runProcess('docker', ['ps', '-aq', '--filter', 'label=airlock.probe'])).stdout.trim()).toBe('');
  }, 60_000);

  it("runs the session as the image's own non-root user", async () => {
    const r = await run(NAMED, [], ['sh', '-c', 'echo "ID $(id -u):$(id -g)"']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('ID 1234:2345\n');
    expect(r.stderr).toMatch(/the session runs as the image's user agent \(1234:2345\)/);
  }, 240_000);

  it('runs the session as a fixed unprivileged uid when the image has no USER or USER root', async () => {
    for (const img of [NONE, ROOTUSER]) {
      const r = await run(img, [], ['sh', '-c', 'echo "ID $(id -u):$(id -g)"']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain(`ID ${UNPRIVILEGED_USER}\n`);
      expect(r.stderr).toMatch(new RegExp(`the session runs as ${UNPRIVILEGED_USER}`));
    }
  }, 400_000);

  it('runs as root only with --user 0:0, and warns', async () => {
    const r = await run(NONE, ['--user', '0:0'], ['sh', '-c', 'echo "ID $(id -u):$(id -g)"']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('ID 0:0\n');
    expect(r.stderr).toMatch(/airlock: warning: --user 0:0: the session runs as root inside the container/);
  }, 240_000);

  it("copies the workspace in owned by the session's user, so it can change what it was given", async () => {
    const ws = join(work, 'ws');
    const out = join(work, 'out');
    mkdirSync(ws);
    mkdirSync(out);
    writeFileSync(join(ws, 'in.txt'), 'original\n', { mode: 0o644 });
    const r = await run(NAMED, ['--workspace', ws, '--copy', '--copy-out', out], ['sh', '-c', 'stat -c "OWNER %u:%g" /workspace/in.txt; echo changed >> /workspace/in.txt']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('OWNER 1234:2345\n');
    expect(readFileSync(join(out, 'in.txt'), 'utf8')).toBe('original\nchanged\n');
  }, 240_000);

  it("warns when a bind-mounted workspace is not writable by the image's user", async () => {
    const ws = join(work, 'ws-bound');
    mkdirSync(ws, { mode: 0o755 });
    const r = await run(NAMED, ['--workspace', ws], ['true']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/airlock: warning: the workspace .*ws-bound belongs to uid 0 and is not writable by the session's uid 1234: chown -R 1234:2345 it/);
  }, 240_000);

  it('doctor flags an image whose default user is root, with the fix, and passes a named non-root one', async () => {
    const bad = await runCli(['doctor', '--image', NONE, '--relay-image', relayImage], { env: baseEnv, timeoutMs: 300_000 });
    expect(bad.code, bad.stdout + bad.stderr).toBe(1);
    expect(bad.stdout).toMatch(/^FAIL default-user — the image names no USER, so it runs as root; fix: end the Dockerfile with a non-root user, e.g. `RUN useradd/m);
    const root = await runCli(['doctor', '--image', ROOTUSER, '--relay-image', relayImage], { env: baseEnv, timeoutMs: 300_000 });
    expect(root.stdout).toMatch(/^FAIL default-user — the image runs as root \(root\); fix: /m);
    const good = await runCli(['doctor', '--image', NAMED, '--relay-image', relayImage], { env: baseEnv, timeoutMs: 300_000 });
    expect(good.stdout).toMatch(/^PASS default-user — the image runs as agent \(uid 1234:2345\), not root$/m);
  }, 900_000);
});
