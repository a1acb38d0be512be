// Images and habits of other launchers, drop-in: `airlock run --allow HOST` (Cloche's network_allow,
// no YAML) and `--compat clauderon` (Clauderon's CA path and placeholder values) against an image
// built here to Clauderon's guide, with a stand-in of api.github.com on 127.0.0.1 (--resolve).
// Bad flags are refused before Docker is touched.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAuditLines } from '../../src/audit/report.js';
import { buildTestImage, describeDocker, ensureRelayImage, removeTestImages } from '../helpers/docker.js';
import { secretLeaks } from '../helpers/secret-leaks.js';
import { createTestPki, rmTmp, runCli, startHttpsUpstream, tmpDir } from '../helpers/servers.js';
import type { TestPki, TestUpstream } from '../helpers/servers.js';
import { expectNoLeftovers, NO_LEFTOVERS, sessionSummary } from './run-helpers.js';

const RUN_ID = randomBytes(3).toString('hex');
const REAL_TOKEN = `ghp_realCompat${randomBytes(16).toString('hex')}`;
const LABEL = `airlock-test=compat-${RUN_ID}`;
const SLOW = 20 * 60_000;

describe('airlock run: bad --allow and --compat are refused before Docker, saying what to give', () => {
  const run = (args: string[]) => runCli(['run', '--image', 'airlock-test-never-used:none', '--engine', '/nonexistent/docker.sock', ...args, '--', 'true'], { timeoutMs: 30_000 });

  it('--allow with a URL names the host to give instead', async () => {
    const r = await run(['--allow', 'https://api.github.com/repos']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('--allow https://api.github.com/repos: "https://api.github.com/repos" is a URL, not a host. Give only the host (and a port if not 80 or 443): --allow api.github.com');
    expect(r.stderr).not.toMatch(/docker|engine/i);
  });

  it('--allow with a port out of range, and a wildcard over a top-level domain', async () => {
    const port = await run(['--allow', 'api.github.com', '--allow', 'registry.example.com:70000']);
    expect(port.code).not.toBe(0);
    expect(port.stderr).toContain('--allow registry.example.com:70000: "registry.example.com:70000": port 70000 is out of range. A port is a number from 1 to 65535');
    const apex = await run(['--allow', '*.com']);
    expect(apex.stderr).toContain('--allow *.com: "*.com" would allow every host under the top-level domain "com". Only a leading "*." on a domain is allowed');
  });

  it('--compat with an unknown name lists the known ones; neither --policy nor --allow says what is needed', async () => {
    const compat = await run(['--allow', 'api.github.com', '--compat', 'clauderonn']);
    expect(compat.code).not.toBe(0);
    expect(compat.stderr).toContain('--compat clauderonn: "clauderonn" is not a known convention; known: clauderon');
    const none = await run([]);
    expect(none.code).not.toBe(0);
    expect(none.stderr).toContain('airlock run needs --policy FILE, or --allow HOST for each host the session may reach (repeatable)');
  });
});

describeDocker('airlock run --allow and --compat clauderon with an image built to Clauderon\'s guide', () => {
  let pki: TestPki;
  let github: TestUpstream;
  let work: string;
  let relayImage: string;
  let image: string;
  let baseEnv: NodeJS.ProcessEnv;

  beforeAll(async () => {
    relayImage = await ensureRelayImage();
    // The guide's minimal Dockerfile, without the agent CLI (no network needed for it here).
    image = await buildTestImage(
      `airlock-test-clauderon:${RUN_ID}`,
      'FROM debian:bookworm-slim\nRUN apt-get update -qq && apt-get install -y -qq --no-install-recommends bash ca-certificates curl git >/dev/null && rm -rf /var/lib/apt/lists/*\nWORKDIR /workspace\nCMD ["/bin/bash"]\n',
      LABEL,
    );
    pki = await createTestPki();
    github = await startHttpsUpstream({ pki, names: ['api.github.com'] });
    work = tmpDir('airlock-compat-');
    chmodSync(work, 0o755);
    baseEnv = { ...process.env };
    for (const name of Object.keys(baseEnv)) if (/^AIRLOCK_|_PROXY$|^(http|https|all|no)_proxy$|^DOCKER_HOST$/i.test(name)) delete baseEnv[name];
  }, SLOW);

  afterAll(async () => {
    await github?.close();
    await removeTestImages(LABEL);
    rmTmp(work, pki?.dir);
  }, 120_000);

  async function run(args: string[], script: string, env: NodeJS.ProcessEnv = {}) {
    const stateDir = join(work, `state-${randomBytes(3).toString('hex')}`);
    const r = await runCli(
      ['run', '--image', image, '--relay-image', relayImage, '--state-dir', stateDir, '--resolve', `api.github.com:443:127.0.0.1:${github.port}`, '--upstream-ca', pki.caFile, ...args, '--', 'bash', '-c', script],
      { env: { ...baseEnv, ...env }, timeoutMs: 180_000 },
    );
    const summary = sessionSummary(r.stderr);
    expect(summary, r.stderr).not.toBeNull();
    expect(await expectNoLeftovers(summary!.id)).toEqual(NO_LEFTOVERS);
    return { ...r, audit: parseAuditLines(readFileSync(summary!.audit, 'utf8')) };
  }

  const status = (url: string, extra = '') => `curl -sS --max-time 15 -o /dev/null -w "%{http_code}\\n" ${extra} ${url} 2>&1 | tail -n 1`;

  it('--allow alone (no policy file) lets the session reach exactly those hosts and ports', async () => {
    const r = await run(
      ['--allow', 'api.github.com', '--allow', 'uploads.example.test:8443'],
      `echo "ALLOWED $(${status('https://api.github.com/zen')})"; echo "OTHER-HOST $(${status('https://gitlab.example.test/')})"; echo "OTHER-PORT $(${status('https://api.github.com:8443/')})"`,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('ALLOWED 200\n');
    // Refused at CONNECT (curl reports the 403 as its exit, with code 000 or the proxy's answer).
    expect(r.stdout).not.toContain('OTHER-HOST 200');
    expect(r.stdout).not.toContain('OTHER-PORT 200');
    const denied = r.audit.filter((l) => l.action === 'deny').map((l) => `${l.host}:${l.port} ${l.reason}`);
    expect(denied).toEqual(expect.arrayContaining(['gitlab.example.test:443 no_rule', 'api.github.com:8443 port_not_allowed']));
    expect(r.audit.some((l) => l.host === 'api.github.com' && l.port === 443 && l.action === 'allow' && l.status === 200)).toBe(true);
  }, 240_000);

  it("--compat clauderon: the CA at Clauderon's path and its placeholders; the stand-in gets the real token", async () => {
    const policy = join(work, 'github.yaml');
    writeFileSync(policy, 'version: 1\nname: compat\nallow:\n  - host: api.github.com\ncredentials:\n  - preset: github\n    secret: { env: AIRLOCK_GITHUB_TOKEN }\n', { mode: 0o644 });
    const before = github.requests.length;
    const r = await run(
      ['--policy', policy, '--compat', 'clauderon'],
      'env | grep -E "^(GH_TOKEN|GITHUB_TOKEN)=" | sort; cmp /etc/clauderon/proxy-ca.pem /etc/airlock/ca.pem && echo SAME-CA; ' +
        // As an image written to the guide does: the CA by Clauderon's path, the token by its variable.
        `echo "API $(${status('https://api.github.com/user', '--cacert /etc/clauderon/proxy-ca.pem -H "Authorization: Bearer $GH_TOKEN"')})"`,
      { AIRLOCK_GITHUB_TOKEN: REAL_TOKEN },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('GH_TOKEN=clauderon-proxy\nGITHUB_TOKEN=clauderon-proxy\n');
    expect(r.stdout).toContain('SAME-CA\n');
    expect(r.stdout).toContain('API 200\n');
    const seen = github.requests.slice(before).filter((q) => q.url === '/user');
    expect(seen.map((q) => q.headers.authorization)).toEqual([`Bearer ${REAL_TOKEN}`]);
    expect(secretLeaks(r.stdout + r.stderr, REAL_TOKEN)).toEqual([]);
    expect(r.audit.find((l) => l.path === '/user')?.credentials).toEqual(['github']);
  }, 240_000);

  it("--compat clauderon keeps a placeholder the policy sets itself", async () => {
    const policy = join(work, 'own-placeholder.yaml');
    writeFileSync(
      policy,
      'version: 1\nname: compat-own\nallow:\n  - host: api.github.com\ncredentials:\n  - preset: github\n    placeholder: my-own-placeholder-123\n    secret: { env: AIRLOCK_GITHUB_TOKEN }\n',
      { mode: 0o644 },
    );
    const r = await run(['--policy', policy, '--compat', 'clauderon'], 'echo "GH $GH_TOKEN"', { AIRLOCK_GITHUB_TOKEN: REAL_TOKEN });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('GH my-own-placeholder-123\n');
  }, 240_000);
});
