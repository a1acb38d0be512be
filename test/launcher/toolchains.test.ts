// `airlock run`: every toolchain in the container trusts the session CA. The image is a company's:
// built on the agent image with Debian's JRE, Ruby, Go, pip and requests, and ENV entries that point
// npm, pip, requests and OpenSSL's directory at another CA. The real clients then go through the
// session (network mode none, the relay) to the local HTTPS stand-ins (test/helpers/toolchains.ts);
// the JVM reads no CA variable, and curl without its variables reads only the system bundle.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { buildTestImage, describeDocker, ensureAgentImage, ensureRelayImage } from '../helpers/docker.js';
import { createTestPki, rmTmp, runCli, runProcess, tmpDir } from '../helpers/servers.js';
import type { ProcessResult, TestPki } from '../helpers/servers.js';
import { compileJavaFetch, startToolchainStandIns, toolCommand, toolsOk, TOOLS } from '../helpers/toolchains.js';
import type { Tool, ToolchainStandIns } from '../helpers/toolchains.js';
import { expectNoLeftovers, NO_LEFTOVERS, sessionSummary } from './run-helpers.js';

// A real CA that is not the session's: what a company image pins its tools to.
const OTHER_CA = '/usr/share/ca-certificates/mozilla/ISRG_Root_X1.crt';
const SLOW = 30 * 60_000;

/** Node 18 in the image has no fetch that reads proxy variables (and undici 7 needs Node 20). */
const IN_CONTAINER: readonly Tool[] = TOOLS.filter((t) => t !== 'node-fetch');

let pki: TestPki;
let standIns: ToolchainStandIns;
let dir: string;
let image: string;
let relayImage: string;
let result: ProcessResult;

function dockerfile(base: string): string {
  return [
    `FROM ${base}`,
    'USER root',
    'RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends default-jre-headless ruby golang-go python3-pip python3-requests >/dev/null && rm -rf /var/lib/apt/lists/*',
    `ENV npm_config_cafile=${OTHER_CA} PIP_CERT=${OTHER_CA} REQUESTS_CA_BUNDLE=${OTHER_CA} SSL_CERT_FILE=${OTHER_CA} SSL_CERT_DIR=/usr/share/ca-certificates/mozilla GIT_SSL_CAINFO=${OTHER_CA} CURL_CA_BUNDLE=${OTHER_CA}`,
    'USER 1000:1000',
    '',
  ].join('\n');
}

describeDocker('airlock run: every toolchain in a company image trusts the session CA', () => {
  beforeAll(async () => {
    const base = await ensureAgentImage();
    relayImage = await ensureRelayImage();
    const text = dockerfile(base);
    // Named by its Dockerfile and kept like the agent test image, so reruns reuse it.
    image = `airlock-toolchains:test-${createHash('sha256').update(text).digest('hex').slice(0, 12)}`;
    if ((await runProcess('docker', ['image', 'inspect', image])).code !== 0) await buildTestImage(image, text, 'airlock-test=toolchains', 20 * 60_000);
    pki = await createTestPki();
    dir = tmpDir('airlock-run-toolchains-');
    chmodSync(dir, 0o755);
    const javaDir = join(dir, 'java');
    mkdirSync(javaDir, { mode: 0o755 });
    await compileJavaFetch(javaDir);
    standIns = await startToolchainStandIns(pki, dir);
    const script = [
      ...IN_CONTAINER.map((tool) => `( ${toolCommand(tool, { work: `/tmp/work-${tool}`, javaDir: '/workspace/java' })} ) 2>&1 | sed 's/^/[${tool}] /'`),
      // Without its variables curl reads the system bundle, which the session's bundle replaced.
      `env -u SSL_CERT_FILE -u CURL_CA_BUNDLE curl -sS --fail --max-time 20 -o /dev/null https://api.example.test/system && echo "SYSTEM-BUNDLE OK"`,
    ].join('\n');
    const stateDir = join(dir, `state-${randomBytes(3).toString('hex')}`);
    result = await runCli(
      [
        'run', '--policy', standIns.policy, '--image', image, '--relay-image', relayImage, '--state-dir', stateDir, '--workspace', dir,
        // Not root, whoever runs the test: root's entrypoint could add the CA to the stores itself.
        '--user', '1000:1000',
        ...standIns.resolve.flatMap((r) => ['--resolve', r]), '--upstream-ca', pki.caFile, '--', 'sh', '-c', script,
      ],
      { timeoutMs: 600_000 },
    );
    const summary = sessionSummary(result.stderr);
    if (!summary) throw new Error(`airlock run failed (${result.code}):\n${result.stderr}\n${result.stdout}`);
    expect(await expectNoLeftovers(summary.id)).toEqual(NO_LEFTOVERS);
  }, SLOW);

  afterAll(async () => {
    await standIns?.close();
    rmTmp(dir, pki?.dir);
  });

  for (const tool of IN_CONTAINER) {
    it(`${tool} reaches its stand-in through the session`, () => {
      const lines = result.stdout.split('\n').filter((l) => l.startsWith(`[${tool}] `));
      expect(toolsOk(lines.map((l) => l.slice(tool.length + 3)).join('\n')), `${tool}:\n${lines.join('\n').slice(-3000)}`).toContain(tool);
    });
  }

  it('a client that reads no CA variable trusts the session CA through the system bundle', () => {
    expect(result.stdout).toMatch(/^SYSTEM-BUNDLE OK$/m);
  });
});
