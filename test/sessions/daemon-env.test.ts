// `eval "$(airlock session create)"` leaves no copy of a secret in the caller's shell: besides the
// secret source variables, every variable of the caller whose value holds a secret of the
// session's policy is unset. The built CLI, a real daemon, a real shell and curl.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI_PATH, createTestPki, freePort, rmTmp, runCli, runProcess, startHttpsUpstream, tmpDir, waitFor } from '../helpers/servers.js';
import type { TestPki, TestUpstream } from '../helpers/servers.js';

const GH_SECRET = `ghp_realGh${randomBytes(12).toString('hex')}`;
const FILE_SECRET = `file+real/${randomBytes(12).toString('hex')}`;
const SECRETS = [GH_SECRET, FILE_SECRET];

let pki: TestPki;
let api: TestUpstream;
let dir: string;
let stateDir: string;
let daemon: ChildProcess;
let daemonOut = '';
let daemonExit: Promise<unknown>;

beforeAll(async () => {
  pki = await createTestPki();
  api = await startHttpsUpstream({ pki, names: ['api.github.com'] });
  dir = tmpDir();
  stateDir = join(dir, 'state');
  writeFileSync(join(dir, 'file-secret'), FILE_SECRET + '\n', { mode: 0o600 });
  const policy = join(dir, 'policy.yaml');
  writeFileSync(
    policy,
    [
      'version: 1',
      'name: daemon-env',
      'allow:',
      '  - host: api.github.com',
      'credentials:',
      '  - preset: github',
      '    secret: { env: AIRLOCK_GITHUB_TOKEN }',
      '  - name: filecred',
      '    env: [FILE_TOKEN]',
      '    hosts: [api.github.com]',
      '    in: [header]',
      '    headers: [x-file]',
      `    secret: { file: ${join(dir, 'file-secret')} }`,
      '',
    ].join('\n'),
  );
  const port = await freePort();
  daemon = spawn(
    process.execPath,
    [CLI_PATH, 'proxy', '--policy', policy, '--listen', `127.0.0.1:${port}`, '--state-dir', stateDir, '--resolve', `api.github.com:443:127.0.0.1:${api.port}`, '--upstream-ca', pki.caFile],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH, HOME: dir, AIRLOCK_GITHUB_TOKEN: GH_SECRET } },
  );
  daemon.stderr!.setEncoding('utf8').on('data', (c: string) => (daemonOut += c));
  daemon.stdout!.setEncoding('utf8').on('data', (c: string) => (daemonOut += c));
  daemonExit = new Promise((resolve) => daemon.once('exit', resolve));
  await waitFor(() => daemonOut.includes('airlock proxy ready') || daemon.exitCode !== null, 20_000, 'the daemon to start');
  expect(daemon.exitCode, daemonOut).toBeNull();
}, 30_000);

afterAll(async () => {
  if (daemon && daemon.exitCode === null && daemon.signalCode === null) {
    daemon.kill('SIGTERM');
    await daemonExit;
  }
  await api?.close();
  rmTmp(dir, pki?.dir);
});

function forms(secret: string): string[] {
  return [secret, encodeURIComponent(secret), Buffer.from(secret).toString('base64')];
}

function secretsIn(text: string, values: readonly string[] = []): string[] {
  return [...SECRETS.flatMap(forms), ...values].filter((n) => text.includes(n));
}

describe('airlock session create in a shell that holds copies of the secrets', () => {
  // The caller's shell: it does not hold the daemon's source variable, but copies of its value.
  const caller: Record<string, string> = {
    GITHUB_PAT: GH_SECRET,
    GH_TOKEN: GH_SECRET,
    REPO_URL: `https://x-access-token:${GH_SECRET}@github.com/o/r.git`,
    BASIC_AUTH: `Basic ${Buffer.from(`x-access-token:${GH_SECRET}`).toString('base64')}`,
    MY_FILE_TOKEN: FILE_SECRET,
    FILE_QUERY: `?key=${encodeURIComponent(FILE_SECRET)}`,
  };
  const callerEnv = () => ({ PATH: process.env.PATH!, HOME: dir, KEEP_ME: 'an ordinary value', ...caller });

  it('prints unset lines for them, names them on stderr, and prints no secret', async () => {
    const r = await runCli(['session', 'create', '--state-dir', stateDir], { env: callerEnv() });
    expect(r.code, r.stderr).toBe(0);
    expect(secretsIn(r.stdout + r.stderr, Object.values(caller))).toEqual([]);
    for (const name of ['GITHUB_PAT', 'REPO_URL', 'BASIC_AUTH', 'MY_FILE_TOKEN', 'FILE_QUERY']) {
      expect(r.stdout).toMatch(new RegExp(`^unset ${name}$`, 'm'));
    }
    expect(r.stdout).not.toMatch(/^unset (KEEP_ME|GH_TOKEN)$/m);
    const notice = r.stderr.split('\n').filter((l) => l.includes('withheld'));
    expect(notice, r.stderr).toHaveLength(1);
    for (const name of ['GITHUB_PAT', 'REPO_URL', 'BASIC_AUTH', 'MY_FILE_TOKEN', 'FILE_QUERY']) expect(notice[0]).toContain(name);
    expect(notice[0]).not.toContain('KEEP_ME');
    expect(daemonOut).not.toContain(GH_SECRET);
  }, 30_000);

  it('after eval, a command started from that shell sees only placeholders, and the proxy swaps in the secrets', async () => {
    const script = [
      'exports="$(node "$1" session create --state-dir "$2")" || exit 1',
      'eval "$exports"',
      'env',
      'echo ----',
      'curl -sS --fail --max-time 10 -H "Authorization: Bearer $GH_TOKEN" -H "X-File: $FILE_TOKEN" https://api.github.com/after-eval',
    ].join('\n');
    const r = await runProcess('sh', ['-c', script, 'sh', CLI_PATH, stateDir], { env: callerEnv(), timeoutMs: 30_000 });
    expect(r.code, r.stderr).toBe(0);
    const [envOut = ''] = r.stdout.split('----\n');
    expect(secretsIn(r.stdout + r.stderr, Object.values(caller))).toEqual([]);
    const env = Object.fromEntries(envOut.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    for (const name of ['GITHUB_PAT', 'REPO_URL', 'BASIC_AUTH', 'MY_FILE_TOKEN', 'FILE_QUERY']) expect(env[name], name).toBeUndefined();
    expect(env.KEEP_ME).toBe('an ordinary value');
    expect(env.GH_TOKEN).toMatch(/^ghp_airlock-github-[0-9a-f]{24}$/);
    expect(env.FILE_TOKEN).toMatch(/^airlock-filecred-[0-9a-f]{24}$/);
    const seen = api.requests.find((q) => q.url === '/after-eval');
    expect(seen, r.stderr).toBeDefined();
    expect(seen!.headers.authorization).toBe(`Bearer ${GH_SECRET}`);
    expect(seen!.headers['x-file']).toBe(FILE_SECRET);
  }, 30_000);
});
