// `airlock run --copy --copy-out` against a hostile session, on the real Docker engine: the agent
// plants symlinks that read, as text, like the output folder itself (`y -> .`, `u1 -> y/..`) and
// then hands back directories "inside" them. The natural loop copies out into the workspace it
// copies in from, so what one run leaves there is where the next one writes. A canary directory
// next to the output folder (its own owner, mode and contents) must come out exactly as it went in.
//
// Everything this file makes is named airlock-copyout-docker-* (tmp dirs) or
// airlock-test-copyout-<run>-* (containers); sessions remove their containers and networks.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, lchownSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describeDocker, ensureAgentImage, ensureRelayImage } from '../helpers/docker.js';
import { rmTmp, runCli, tmpDir } from '../helpers/servers.js';
import { expectNoLeftovers, NO_LEFTOVERS, sessionSummary, snapshot } from './run-helpers.js';

const RUN_ID = randomBytes(3).toString('hex');
const CANARY_ID = 31337;
/**
 * The invoking user, as sudo passes it. The container runs as this uid:gid (run's default), as it
 * would for a real user: the agent can then remove, in its copy, anything the user owns in the
 * workspace. Copy-out must write files as this user, not as root.
 */
const SUDO = { uid: 31338, gid: 31339 };

let image: string;
let relayImage: string;
let policy: string;
let stateDir: string;
let env: NodeJS.ProcessEnv;
const scratch: string[] = [];

/** A folder holding the workspace (also the output folder) and a canary directory next to it. */
function setUp(): { base: string; ws: string; canary: string } {
  const base = tmpDir('airlock-copyout-docker-');
  scratch.push(base);
  chmodSync(base, 0o751);
  const ws = join(base, 'ws');
  mkdirSync(ws);
  writeFileSync(join(ws, 'hello.txt'), 'from the host\n');
  chownSync(ws, SUDO.uid, SUDO.gid);
  chownSync(join(ws, 'hello.txt'), SUDO.uid, SUDO.gid);
  const canary = join(base, 'canary');
  mkdirSync(canary);
  chmodSync(canary, 0o750);
  writeFileSync(join(canary, 'secret'), 'canary secret\n', { mode: 0o640 });
  chownSync(canary, CANARY_ID, CANARY_ID);
  chownSync(join(canary, 'secret'), CANARY_ID, CANARY_ID);
  return { base, ws, canary };
}

/** One `airlock run --copy --copy-out WS` of `script` in /workspace. */
async function copyRun(ws: string, tag: string, script: string) {
  const r = await runCli(
    [
      'run', '--policy', policy, '--image', image, '--relay-image', relayImage, '--state-dir', stateDir,
      '--name', `airlock-test-copyout-${RUN_ID}-${tag}-${randomBytes(2).toString('hex')}`,
      '--workspace', ws, '--copy', '--copy-out', ws,
      '--', 'sh', '-c', `set -e; cd /workspace; ${script}`,
    ],
    { env, timeoutMs: 120_000 },
  );
  const summary = sessionSummary(r.stderr);
  if (summary) expect(await expectNoLeftovers(summary.id)).toEqual(NO_LEFTOVERS);
  return r;
}

describeDocker('airlock run --copy --copy-out: a session that plants links cannot write outside the output folder', () => {
  beforeAll(async () => {
    image = process.env.AIRLOCK_RUN_TEST_IMAGE || (await ensureAgentImage());
    relayImage = await ensureRelayImage();
    const dir = tmpDir('airlock-copyout-docker-state-');
    scratch.push(dir);
    policy = join(dir, 'policy.yaml');
    writeFileSync(policy, 'version: 1\nname: copy-out\nallow: []\n');
    stateDir = join(dir, 'state');
    env = { ...process.env, SUDO_UID: String(SUDO.uid), SUDO_GID: String(SUDO.gid) };
    for (const name of Object.keys(env)) {
      if (/^AIRLOCK_|_PROXY$|^(http|https|all|no)_proxy$/i.test(name)) delete env[name];
    }
  }, 30 * 60_000);

  afterAll(() => rmTmp(...scratch));

  it('two runs into the same folder: the chain the first leaves cannot carry the second outside (canary unchanged)', async () => {
    const { base, ws, canary } = setUp();
    const before = snapshot(base, ws);

    // In a directory of its own: it can remove, in the next run's copy, links made there.
    // d/u1 is, on disk, the output folder and d/u2 the folder above it.
    const one = await copyRun(ws, 'plant', 'mkdir d; ln -s . d/y; ln -s y/.. d/u1; ln -s u1/.. d/u2; echo one > note.txt');
    expect(snapshot(base, ws)).toEqual(before);
    expect(one.code, one.stderr).toBe(0);
    const afterOne = readdirSync(ws).sort();

    const two = await copyRun(
      ws,
      'through',
      'rm -f d/y d/u1 d/u2; mkdir -p d/u2/canary/pwned; echo planted > d/u2/canary/pwned/planted; ' +
        'echo overwritten > d/u2/canary/secret; chmod 0777 d/u2 d/u2/canary d/u2/canary/pwned',
    );
    // The canary and the folder above the output folder: owner, mode, contents, nothing new.
    expect(snapshot(base, ws)).toEqual(before);
    expect(readdirSync(canary)).toEqual(['secret']);
    expect(two.code, two.stderr).toBe(0);
    // The first run's links were dropped, by name.
    expect(one.stderr).toContain('airlock: copy-out: dropped 3 entries of /workspace');
    expect(one.stderr).toContain('"d/y": symbolic link to "."');
    expect(one.stderr).toContain('"d/u1": symbolic link to "y/.."');
    expect(one.stderr).toContain('"d/u2": symbolic link to "u1/.."');
    expect(afterOne).toEqual(['d', 'hello.txt', 'note.txt']);
    // What the session made is inside the output folder, as real directories, owned by the invoking user.
    expect(lstatSync(join(ws, 'd', 'u2')).isDirectory()).toBe(true);
    expect(readFileSync(join(ws, 'd', 'u2', 'canary', 'pwned', 'planted'), 'utf8')).toBe('planted\n');
    for (const rel of ['note.txt', 'd', 'd/u2', 'd/u2/canary/pwned/planted']) {
      const st = lstatSync(join(ws, rel));
      expect({ rel, uid: st.uid, gid: st.gid }).toEqual({ rel, ...SUDO });
    }
  }, 300_000);

  it('one run is enough when the folder already holds such links: they are left alone, never written through', async () => {
    const { base, ws, canary } = setUp();
    // Links an older copy-out (or anyone) left in the output folder.
    const links: Record<string, string> = { y: '.', u1: 'y/..', esc: canary };
    for (const [name, target] of Object.entries(links)) {
      symlinkSync(target, join(ws, name));
      lchownSync(join(ws, name), SUDO.uid, SUDO.gid);
    }
    const before = snapshot(base, ws);
    const r = await copyRun(
      ws,
      'existing',
      'rm -f y u1 esc; mkdir -p u1/canary/pwned esc/pwned2; echo x > esc/f; chmod 0777 u1 u1/canary esc',
    );
    expect(snapshot(base, ws)).toEqual(before);
    expect(readdirSync(canary)).toEqual(['secret']);
    for (const [name, target] of Object.entries(links)) {
      expect(lstatSync(join(ws, name)).isSymbolicLink(), name).toBe(true);
      expect(readlinkSync(join(ws, name)), name).toBe(target);
    }
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/airlock: copy-out: left 2 paths in ".*" as they were/);
    expect(r.stderr).toContain('"esc": a symbolic link in the output folder (not followed, not replaced)');
    expect(r.stderr).toContain('"u1": a symbolic link in the output folder (not followed, not replaced)');
  }, 300_000);
});
