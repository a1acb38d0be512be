// Docker sessions follow their policy files through the daemon: `airlock run --daemon` with a
// container still running, a refusal in `airlock inbox`, `airlock approve` writing the file, and
// the same request succeeding from the same container. And the attacker's side: a policy file in
// the workspace the container mounts is not watched, so the session cannot rewrite its own policy.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describeDocker } from '../helpers/docker.js';
import { freePort, rmTmp, runCli, startHttpsUpstream, tmpDir, waitFor, sleep } from '../helpers/servers.js';
import type { TestPki, TestUpstream } from '../helpers/servers.js';
import { execScript, expectNoLeftovers, finishSession, NO_LEFTOVERS, relayRunSetup, sessionCommand, spawnCli, waitExit, waitForSession } from './run-helpers.js';
import type { LiveCli } from './run-helpers.js';

const RUN_ID = randomBytes(3).toString('hex');
const POLICY = `version: 1
name: run-reload
# read-only docs for now
allow:
  - host: api.github.com
    methods: [GET]
    paths: ["/docs/*"]
`;

let image: string;
let relayImage: string;
let pki: TestPki;
let github: TestUpstream;
let work: string;
let stateDir: string;
let daemon: LiveCli | undefined;
/** Launchers still running when a test fails: ended in afterAll, which removes their containers. */
const launchers: LiveCli[] = [];
let baseEnv: NodeJS.ProcessEnv;

beforeAll(async () => {
  ({ image, relayImage, baseEnv, pki } = await relayRunSetup());
  github = await startHttpsUpstream({ pki, names: ['api.github.com'] });
  work = tmpDir('airlock-run-reload-');
  stateDir = join(work, 'state');
}, 600_000);

afterAll(async () => {
  for (const l of launchers) if (!l.exited()) l.child.kill('SIGTERM');
  await Promise.all(launchers.map((l) => waitExit(l, 30_000).catch(() => {})));
  if (daemon && !daemon.exited()) {
    daemon.child.kill('SIGTERM');
    await waitExit(daemon, 15_000).catch(() => {});
  }
  await github?.close();
  rmTmp(work, pki?.dir);
});

const fetch = (path: string) => `curl -sS --max-time 15 -o /dev/null -w '%{http_code}\\n' https://api.github.com${path}`;

describeDocker('airlock run --daemon follows the policy file', () => {
  it('approve in the inbox reaches the still-running container; a policy in the workspace is not watched', async () => {
    const listen = `127.0.0.1:${await freePort()}`;
    writeFileSync(join(work, 'daemon.yaml'), 'version: 1\nname: daemon-default\nallow: []\n');
    daemon = spawnCli(
      ['proxy', '--policy', join(work, 'daemon.yaml'), '--listen', listen, '--state-dir', stateDir, '--resolve', `api.github.com:443:127.0.0.1:${github.port}`, '--upstream-ca', pki.caFile],
      baseEnv,
    );
    await waitFor(() => daemon!.stderr().includes('airlock proxy ready') || daemon!.exited(), 30_000, 'the daemon');
    expect(daemon.exited(), daemon.stderr()).toBe(false);

    // A: the policy beside the workspace. B: the policy inside the workspace it mounts.
    const outside = join(work, 'policy.yaml');
    writeFileSync(outside, POLICY);
    const wsA = join(work, 'ws-a');
    const wsB = join(work, 'ws-b');
    // Root's sessions run as the image's user (1000), which writes here (and B its policy file).
    // chmod, not a create mode: that one is filtered by the umask.
    mkdirSync(wsA);
    mkdirSync(wsB);
    chmodSync(wsA, 0o777);
    chmodSync(wsB, 0o777);
    const inside = join(wsB, 'policy.yaml');
    writeFileSync(inside, POLICY);
    chmodSync(inside, 0o666);
    const launch = (policy: string, workspace: string, name: string) => {
      const cli = spawnCli(['run', '--daemon', '--state-dir', stateDir, '--policy', policy, '--image', image, '--relay-image', relayImage, '--workspace', workspace, '--name', name, '--', ...sessionCommand()], baseEnv);
      launchers.push(cli);
      return cli;
    };
    const nameA = `airlock-test-reload-a-${RUN_ID}`;
    const nameB = `airlock-test-reload-b-${RUN_ID}`;
    const a = launch(outside, wsA, nameA);
    const b = launch(inside, wsB, nameB);
    const [ca, cb] = await Promise.all([waitForSession(a, nameA, join(wsA, 'ready')), waitForSession(b, nameB, join(wsB, 'ready'))]);
    expect(b.stderr()).toContain(`not watching ${inside} for changes: it is inside the workspace the session can write`);

    // A: refused, approved, then allowed in the same container.
    expect((await execScript(nameA, fetch('/repos/acme/issues'))).stdout).toBe('403\n');
    const inbox = await waitFor(async () => {
      const r = await runCli(['inbox', '--state-dir', stateDir], { env: baseEnv });
      return r.stdout.includes(`${ca.sessionId}  GET https://api.github.com/repos/acme/issues  path_not_allowed`) ? r : null;
    }, 10_000, 'the inbox item');
    const id = new RegExp(`^\\s*(\\d+)\\s+${ca.sessionId}\\s`, 'm').exec(inbox.stdout)![1]!;
    const approved = await runCli(['approve', id, '--yes', '--state-dir', stateDir], { env: baseEnv });
    expect(approved.code, approved.stderr).toBe(0);
    expect(approved.stdout).toContain('+    paths: [/repos/acme/issues]');
    expect(readFileSync(outside, 'utf8')).toContain('# read-only docs for now\n');
    expect((await execScript(nameA, fetch('/repos/acme/issues'))).stdout).toBe('200\n');

    // B: the container rewrites its own policy file; nothing changes in force.
    const before = (await execScript(nameB, fetch('/anything'))).stdout;
    expect(before).toBe('403\n');
    const rewrite = await execScript(nameB, `printf 'version: 1\\nname: pwned\\nmode: report\\nallow:\\n  - host: "*.github.com"\\n' > /workspace/policy.yaml && echo written`);
    expect(rewrite.stdout, rewrite.stderr).toBe('written\n');
    await sleep(1_500);
    expect((await execScript(nameB, fetch('/anything'))).stdout).toBe('403\n');
    // Nor can approving one of its refusals carry the rewrite in: the file is not what runs.
    const itemB = await waitFor(async () => {
      const r = await runCli(['inbox', '--state-dir', stateDir], { env: baseEnv });
      return new RegExp(`^\\s*(\\d+)\\s+${cb.sessionId}\\s+GET https://api\\.github\\.com/anything`, 'm').exec(r.stdout)?.[1];
    }, 10_000, 'the inbox item of B');
    const refused = await runCli(['approve', itemB, '--yes', '--state-dir', stateDir], { env: baseEnv });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`is not the version session ${cb.sessionId} runs`);
    expect((await execScript(nameB, fetch('/anything'))).stdout).toBe('403\n');

    await Promise.all([finishSession(nameA, 0), finishSession(nameB, 0)]);
    const [ra, rb] = await Promise.all([waitExit(a), waitExit(b)]);
    expect(ra.code, ra.stderr).toBe(0);
    expect(rb.code, rb.stderr).toBe(0);
    expect(await expectNoLeftovers(ca.sessionId)).toEqual(NO_LEFTOVERS);
    expect(await expectNoLeftovers(cb.sessionId)).toEqual(NO_LEFTOVERS);
  }, 300_000);
});
