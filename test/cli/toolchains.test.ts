// `airlock exec`: every toolchain trusts the session CA, whatever CA settings the caller had. The
// caller here is a company machine: every CA variable, an npm `cafile` in the project's .npmrc, a
// pip.conf `cert`, an inline npm `ca` and JVM options all name another CA (a second test PKI's,
// which the stand-ins do not use). Each real client (npm, pip, go, Java HttpClient, Ruby net/http,
// curl, git, Python requests, Node fetch) then goes through an Airlock session to the local HTTPS
// stand-ins (test/helpers/toolchains.ts).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CA_DIR_ENV_VARS, CA_ENV_VARS, SHADOWING_CA_VARS } from '../../src/sessions/client-env.js';
import { createTestPki, isolatedGitEnv, REPO_ROOT, rmTmp, runCli, tmpDir } from '../helpers/servers.js';
import type { TestPki } from '../helpers/servers.js';
import { compileJavaFetch, startToolchainStandIns, toolCommand, toolsOk, TOOLS } from '../helpers/toolchains.js';
import type { ToolchainStandIns } from '../helpers/toolchains.js';

let pki: TestPki;
let other: TestPki;
let standIns: ToolchainStandIns;
let dir: string;
let home: string;
let javaDir: string;
let callerEnv: NodeJS.ProcessEnv;

/** Debian's python3 (with python3-requests and pip), not a pyenv shim's. */
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

beforeAll(async () => {
  [pki, other] = await Promise.all([createTestPki(), createTestPki()]);
  dir = tmpDir('airlock-toolchains-');
  home = join(dir, 'home');
  mkdirSync(home);
  javaDir = join(dir, 'java');
  mkdirSync(javaDir);
  await compileJavaFetch(javaDir);
  standIns = await startToolchainStandIns(pki, dir);
  const wrong = other.caFile;
  const pipConf = join(dir, 'pip.conf');
  writeFileSync(pipConf, `[global]\ncert = ${wrong}\n`);
  callerEnv = isolatedGitEnv(home, {
    ...Object.fromEntries(CA_ENV_VARS.map((name) => [name, wrong])),
    ...Object.fromEntries(CA_DIR_ENV_VARS.map((name) => [name, dirname(wrong)])),
    npm_config_ca: readFileSync(wrong, 'utf8'),
    PIP_CONFIG_FILE: pipConf,
    JAVA_TOOL_OPTIONS: `-Djavax.net.ssl.trustStore=${join(dir, 'company.jks')} -Xss2m`,
    npm_config_update_notifier: 'false',
  });
}, 180_000);

afterAll(async () => {
  await standIns?.close();
  rmTmp(dir, pki?.dir, other?.dir);
});

async function exec(command: string, cwd?: string) {
  const stateDir = tmpDir('airlock-toolchains-state-');
  try {
    return await runCli(
      ['exec', '--policy', standIns.policy, '--state-dir', stateDir, ...standIns.resolve.flatMap((r) => ['--resolve', r]), '--upstream-ca', pki.caFile, '--', 'sh', '-c', command],
      { env: callerEnv, cwd, timeoutMs: 180_000 },
    );
  } finally {
    rmTmp(stateDir);
  }
}

describe('airlock exec: every toolchain trusts the session CA over the caller\'s CA settings', () => {
  it('sets every CA variable to the session bundle, SSL_CERT_DIR to a directory holding only it, and drops an inline npm ca', async () => {
    const r = await exec('env; echo ----; ls -A "$SSL_CERT_DIR"');
    expect(r.code, r.stderr).toBe(0);
    const [envOut = '', listing = ''] = r.stdout.split('----\n');
    const env = Object.fromEntries(envOut.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    const bundle = env.SSL_CERT_FILE!;
    expect(bundle).toMatch(/\/trust\/bundle\.pem$/);
    for (const name of CA_ENV_VARS) expect(env[name], name).toBe(bundle);
    for (const name of CA_DIR_ENV_VARS) expect(env[name], name).toBe(dirname(bundle));
    // The directory holds the bundle and its Java form, no key, no log.
    expect(listing.trim().split('\n').sort()).toEqual(['bundle.jks', 'bundle.pem']);
    for (const name of SHADOWING_CA_VARS) expect(env[name], name).toBeUndefined();
    // The caller's JVM options stay; the session's trust store comes after theirs.
    expect(env.JAVA_TOOL_OPTIONS).toMatch(/^-Djavax\.net\.ssl\.trustStore=\S*company\.jks -Xss2m -Djavax\.net\.ssl\.trustStore=\S*\/trust\/bundle\.jks /);
    expect(env.NODE_USE_ENV_PROXY).toBe('1');
  }, 60_000);

  const undici = join(REPO_ROOT, 'node_modules', 'undici');
  for (const tool of TOOLS) {
    it(`${tool} reaches its stand-in through the session`, async () => {
      const work = join(dir, `work-${tool}`);
      mkdirSync(work);
      // npm's project config names the other CA too (npm_config_cafile in the environment wins).
      if (tool === 'npm') {
        mkdirSync(join(work, 'npm'));
        writeFileSync(join(work, 'npm', '.npmrc'), `cafile=${other.caFile}\n`);
      }
      const before = standIns.upstream.requests.length + standIns.git.requests.length;
      const r = await exec(toolCommand(tool, { work, javaDir, undici, python: PYTHON }), work);
      expect(toolsOk(r.stdout), `${tool}: exit ${r.code}\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-3000)}`).toContain(tool);
      // It went through the proxy to the stand-in (the audit summary counts it as allowed).
      expect(standIns.upstream.requests.length + standIns.git.requests.length).toBeGreaterThan(before);
      expect(r.stderr).toMatch(/airlock: session s-[0-9a-f]+: .*allowed/);
    }, 200_000);
  }
});
