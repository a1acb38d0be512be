// `airlock exec` keeps every copy of a secret out of the command's environment, not only the
// variable the policy names as its source: the built CLI, a child that prints its whole
// environment (`env` and /proc/<pid>/environ), and an HTTPS server answering as api.github.com.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTestPki, isolatedGitEnv, rmTmp, runCli, startHttpsUpstream, tmpDir } from '../helpers/servers.js';
import type { TestPki, TestUpstream } from '../helpers/servers.js';

// Fresh per run; the command secret has characters that percent-encoding changes.
const GH_SECRET = `ghp_realGh${randomBytes(12).toString('hex')}`;
const FILE_SECRET = `file-real-${randomBytes(12).toString('hex')}`;
const CMD_SECRET = `cmd+real/${randomBytes(12).toString('hex')}=`;
const SECRETS = [GH_SECRET, FILE_SECRET, CMD_SECRET];

let pki: TestPki;
let api: TestUpstream;
let dir: string;
let home: string;
let policyFile: string;

beforeAll(async () => {
  pki = await createTestPki();
  api = await startHttpsUpstream({ pki, names: ['api.github.com'] });
  dir = tmpDir();
  home = tmpDir('airlock-home-');
  writeFileSync(join(dir, 'file-secret'), FILE_SECRET + '\n', { mode: 0o600 });
  writeFileSync(join(dir, 'cmd-secret'), CMD_SECRET, { mode: 0o600 });
  policyFile = join(dir, 'policy.yaml');
  writeFileSync(
    policyFile,
    [
      'version: 1',
      'name: exec-env',
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
      '  - name: cmdcred',
      '    env: [CMD_TOKEN]',
      '    hosts: [api.github.com]',
      '    in: [header]',
      '    headers: [x-cmd]',
      `    secret: { command: [cat, ${join(dir, 'cmd-secret')}] }`,
      '',
    ].join('\n'),
  );
});

afterAll(async () => {
  await api?.close();
  rmTmp(dir, home, pki?.dir);
});

// The child prints its environment twice: as its shell sees it (`env`) and as the kernel holds
// it (/proc/<pid>/environ: exactly what airlock passed to exec), then makes one request with
// the three placeholders.
const CHILD = [
  'env',
  'echo ----',
  "tr '\\0' '\\n' < /proc/$$/environ",
  'echo ----',
  'curl -sS --fail --max-time 10 -H "Authorization: Bearer $GH_TOKEN" -H "X-File: $FILE_TOKEN" -H "X-Cmd: $CMD_TOKEN" "https://api.github.com/swap/$1"',
].join('\n');

/** Runs the child under `airlock exec` with the host environment `extra` on top of the source. */
async function exec(tag: string, extra: Record<string, string>) {
  const stateDir = tmpDir('airlock-exec-env-state-');
  const env = isolatedGitEnv(home, { AIRLOCK_GITHUB_TOKEN: GH_SECRET, KEEP_ME: 'an ordinary value', ...extra });
  const r = await runCli(
    [
      'exec',
      '--policy',
      policyFile,
      '--state-dir',
      stateDir,
      '--resolve',
      `api.github.com:443:127.0.0.1:${api.port}`,
      '--upstream-ca',
      pki.caFile,
      '--',
      'sh',
      '-c',
      CHILD,
      'child',
      tag,
    ],
    { env, timeoutMs: 30_000 },
  );
  const [envOut = '', environ = ''] = r.stdout.split('----\n');
  const childEnv = Object.fromEntries(
    environ
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  const stateFiles = filesUnder(stateDir).map((f) => readFileSync(f, 'latin1')).join('\n');
  rmTmp(stateDir);
  return { ...r, envOut, environ, childEnv, stateFiles, request: api.requests.find((q) => q.url === `/swap/${tag}`) };
}

function filesUnder(d: string): string[] {
  if (!existsSync(d)) return [];
  return readdirSync(d).flatMap((name) => {
    const path = join(d, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

/** Each secret as is and in the encodings a copy of it might take: percent-encoded, base64. */
function forms(secret: string): string[] {
  return [secret, encodeURIComponent(secret), Buffer.from(secret).toString('base64')];
}

/** Which secrets (in any form) occur in `text`. */
function secretsIn(text: string, values: readonly string[] = []): string[] {
  const needles = [...SECRETS.flatMap(forms), ...values];
  return needles.filter((n) => text.includes(n));
}

type ExecResult = Awaited<ReturnType<typeof exec>>;

/** The child saw no secret, airlock printed none; the named variables were withheld and said so. */
function expectWithheld(r: ExecResult, extra: Record<string, string>, withheld: string[]) {
  expect(r.code, r.stderr).toBe(0);
  const values = Object.values(extra);
  expect(secretsIn(r.envOut, values), 'in the child env output').toEqual([]);
  expect(secretsIn(r.environ, values), 'in /proc/<pid>/environ of the child').toEqual([]);
  expect(secretsIn(r.stdout + r.stderr, values), "in airlock's stdout/stderr").toEqual([]);
  expect(secretsIn(r.stateFiles), 'in the state dir (proxy log, audit)').toEqual([]);
  for (const name of withheld) expect(r.childEnv[name], name).toBeUndefined();
  // One line on stderr names the variables, never their values.
  const notice = r.stderr.split('\n').filter((l) => l.includes('withheld'));
  expect(notice, r.stderr).toHaveLength(1);
  for (const name of withheld) expect(notice[0]).toContain(name);
  // Unrelated variables and the source variable are not listed; the source is simply gone.
  expect(notice[0]).not.toContain('KEEP_ME');
  expect(notice[0]).not.toContain('AIRLOCK_GITHUB_TOKEN');
  expect(r.childEnv.AIRLOCK_GITHUB_TOKEN).toBeUndefined();
  expect(r.childEnv.KEEP_ME).toBe('an ordinary value');
}

/** The session still works: placeholders set, and the proxy swapped in all three real secrets. */
function expectSwapped(r: ExecResult) {
  expect(r.childEnv.GH_TOKEN).toMatch(/^ghp_airlock-github-[0-9a-f]{24}$/);
  expect(r.childEnv.GITHUB_TOKEN).toBe(r.childEnv.GH_TOKEN);
  expect(r.childEnv.FILE_TOKEN).toMatch(/^airlock-filecred-[0-9a-f]{24}$/);
  expect(r.childEnv.CMD_TOKEN).toMatch(/^airlock-cmdcred-[0-9a-f]{24}$/);
  expect(r.request, r.stderr).toBeDefined();
  expect(r.request!.headers.authorization).toBe(`Bearer ${GH_SECRET}`);
  expect(r.request!.headers['x-file']).toBe(FILE_SECRET);
  expect(r.request!.headers['x-cmd']).toBe(CMD_SECRET);
}

describe.concurrent('airlock exec withholds every variable that holds a secret', () => {
  it('a second variable with the same value as the source variable', async () => {
    const extra = { GITHUB_PAT: GH_SECRET, GH_TOKEN: GH_SECRET };
    const r = await exec('same-value', extra);
    // GH_TOKEN is a placeholder variable: it gets its placeholder, so only GITHUB_PAT is withheld.
    expectWithheld(r, extra, ['GITHUB_PAT']);
    expect(r.stderr).not.toMatch(/withheld.*GH_TOKEN/);
    expectSwapped(r);
  }, 30_000);

  it('a variable that contains the secret, as in a URL or an Authorization header', async () => {
    const extra = {
      REPO_URL: `https://x-access-token:${GH_SECRET}@github.com/o/r.git`,
      AUTH_LINE: `Authorization: Bearer ${GH_SECRET}`,
    };
    const r = await exec('contains', extra);
    expectWithheld(r, extra, ['REPO_URL', 'AUTH_LINE']);
    expectSwapped(r);
  }, 30_000);

  it("a file secret whose value the user's shell also exports", async () => {
    const extra = { MY_FILE_TOKEN: FILE_SECRET, FILE_URL: `https://u:${FILE_SECRET}@example.com/` };
    const r = await exec('file', extra);
    expectWithheld(r, extra, ['MY_FILE_TOKEN', 'FILE_URL']);
    expectSwapped(r);
  }, 30_000);

  it("a command secret whose value the user's shell also exports", async () => {
    const extra = { MY_CMD_TOKEN: CMD_SECRET };
    const r = await exec('command', extra);
    expectWithheld(r, extra, ['MY_CMD_TOKEN']);
    expectSwapped(r);
  }, 30_000);

  it('copies in the encodings the proxy itself produces: percent-encoded, base64 (Basic, _auth)', async () => {
    const extra = {
      CMD_QUERY_URL: `https://api.example.com/v1?key=${encodeURIComponent(CMD_SECRET)}`,
      CMD_QUERY_LOWER: `key=${encodeURIComponent(CMD_SECRET).replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase())}`,
      BASIC_AUTH: `Basic ${Buffer.from(`x-access-token:${GH_SECRET}`).toString('base64')}`,
      NPMRC_AUTH: `//registry.npmjs.org/:_auth=${Buffer.from(`me:${FILE_SECRET}`).toString('base64')}`,
      B64_URL_SAFE: Buffer.from(`??${FILE_SECRET}>>`).toString('base64url'),
    };
    const r = await exec('encoded', extra);
    expectWithheld(r, extra, Object.keys(extra));
    expectSwapped(r);
  }, 30_000);

  it('keeps variables that merely resemble a secret', async () => {
    const extra = { PREFIX_ONLY: GH_SECRET.slice(0, -1), OTHER_TOKEN: 'ghp_somethingElse0123456789' };
    const r = await exec('resemble', extra);
    expect(r.code, r.stderr).toBe(0);
    expect(r.childEnv.PREFIX_ONLY).toBe(extra.PREFIX_ONLY);
    expect(r.childEnv.OTHER_TOKEN).toBe(extra.OTHER_TOKEN);
    expect(r.stderr).not.toMatch(/withheld/i);
    expectSwapped(r);
  }, 30_000);
});

describe('airlock exec with a secret command that fails at start', () => {
  it('exits before running the command, naming the credential and never its output', async () => {
    const failing = join(dir, 'failing-policy.yaml');
    writeFileSync(
      failing,
      [
        'version: 1',
        'name: failing',
        'allow: []',
        'credentials:',
        '  - name: cmdcred',
        '    env: [CMD_TOKEN]',
        '    hosts: [api.github.com]',
        `    secret: { command: [sh, -c, "echo ${CMD_SECRET}; exit 3"] }`,
        '',
      ].join('\n'),
    );
    const marker = join(dir, 'ran');
    const stateDir = tmpDir('airlock-exec-env-state-');
    const r = await runCli(['exec', '--policy', failing, '--state-dir', stateDir, '--', 'touch', marker], { env: isolatedGitEnv(home) });
    rmTmp(stateDir);
    expect(r.code).not.toBe(0);
    expect(existsSync(marker)).toBe(false);
    expect(r.stderr).toContain('credential "cmdcred"');
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(secretsIn(r.stdout + r.stderr)).toEqual([]);
  }, 30_000);
});
