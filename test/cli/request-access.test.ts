// The agent's side of a refusal, end to end: inside a running `airlock exec` session a script
// (curl only) is refused, reads why at http://airlock.internal/, files a request for access,
// the operator approves it with `airlock approve ID --yes`, and the same request then succeeds
// in the still-running session. Also: exec prints the note on the endpoint and writes it into the
// agent's instructions with --agent-notes, once, and never through a symlink.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI_PATH, createTestPki, rmTmp, runCli, startHttpsUpstream, tmpDir, waitFor } from '../helpers/servers.js';
import type { TestPki, TestUpstream } from '../helpers/servers.js';

const POLICY = `version: 1
name: agent-asks
allow:
  - host: api.github.com
    paths: ["/docs/*"]
`;

let pki: TestPki;
let api: TestUpstream;
let dir: string;

beforeAll(async () => {
  pki = await createTestPki();
  api = await startHttpsUpstream({ pki, names: ['api.github.com'] });
  dir = tmpDir('airlock-request-access-');
}, 30_000);

afterAll(async () => {
  await api?.close();
  rmTmp(dir, pki?.dir);
});

describe('request access from inside airlock exec', () => {
  it('refused, reads why, asks; the operator approves; the same request succeeds in the running session', async () => {
    const policyFile = join(dir, 'policy.yaml');
    const stateDir = join(dir, 'state');
    const go = join(dir, 'go');
    const notes = join(dir, 'CLAUDE.md');
    writeFileSync(policyFile, POLICY);
    writeFileSync(notes, '# Project\n\nBuild with make.\n');
    const url = 'https://api.github.com/repos/acme/widgets';
    // The agent: only curl and the words it was given.
    const script = [
      `curl -sS -w '\\nstatus=%{http_code}\\n' ${url}`,
      `echo '--- why'`,
      `curl -sS "http://airlock.internal/why?method=GET&url=${url}"`,
      `echo '--- ask'`,
      `curl -sS http://airlock.internal/request-access -d host=api.github.com -d method=GET -d path=/repos/acme/widgets -d reason='list the widgets for the release notes'`,
      `echo '--- asked'`,
      `while [ ! -e ${go} ]; do sleep 0.05; done`,
      `curl -sS -o /dev/null -w 'after=%{http_code}\\n' ${url}`,
    ].join('; ');
    const child = spawn(
      process.execPath,
      [CLI_PATH, 'exec', '--policy', policyFile, '--state-dir', stateDir, '--agent-notes', notes, '--resolve', `api.github.com:443:127.0.0.1:${api.port}`, '--upstream-ca', pki.caFile, '--', 'sh', '-c', script],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await waitFor(() => stdout.includes('--- asked') || child.exitCode !== null, 20_000, 'the agent to ask');
      // Refused, with the policy and where to ask in what curl printed.
      const [refused, why, asked] = [stdout.split('--- why')[0]!, stdout.split('--- why')[1]!.split('--- ask')[0]!, stdout.split('--- ask')[1]!.split('--- asked')[0]!];
      expect(refused, stderr).toContain('status=403');
      expect(JSON.parse(refused.split('\nstatus=')[0]!)).toMatchObject({ policy: 'agent-asks', reason: 'path_not_allowed' });
      expect(refused).toContain('http://airlock.internal/request-access');
      expect(JSON.parse(why)).toMatchObject({ decision: 'deny', reason: 'path_not_allowed', rule: 'allow[0] api.github.com' });
      const filed = JSON.parse(asked);
      expect(filed).toMatchObject({ state: 'open' });
      // exec told the agent about the endpoint, and wrote it into its instructions.
      expect(stderr).toContain('http://airlock.internal/request-access');
      expect(readFileSync(notes, 'utf8')).toMatch(/^# Project\n\nBuild with make\.\n\n## Network access \(Airlock\)\n\n.*airlock\.internal/s);

      const sessionId = readdirSync(join(stateDir, 'sessions'))[0]!;
      const inbox = await runCli(['inbox', '--session', sessionId, '--state-dir', stateDir]);
      expect(inbox.stdout).toContain('list the widgets for the release notes');
      const approved = await runCli(['approve', filed.id, '--session', sessionId, '--yes', '--state-dir', stateDir]);
      expect(approved.code, approved.stderr).toBe(0);
      expect(readFileSync(policyFile, 'utf8')).toContain('/repos/acme/widgets');
      writeFileSync(go, '');
      expect(await exited).toBe(0);
      expect(stdout).toContain('after=200\n');
      expect(api.requests.filter((r) => r.url === '/repos/acme/widgets')).toHaveLength(1);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 60_000);

  it('--agent-notes writes the note once, and refuses a symlink', async () => {
    const policyFile = join(dir, 'policy2.yaml');
    writeFileSync(policyFile, POLICY);
    const notes = join(dir, 'AGENTS.md');
    const args = (file: string) => ['exec', '--policy', policyFile, '--state-dir', join(dir, 'state2'), '--agent-notes', file, '--', 'true'];
    expect((await runCli(args(notes))).code).toBe(0);
    expect((await runCli(args(notes))).code).toBe(0);
    expect(readFileSync(notes, 'utf8').match(/## Network access \(Airlock\)/g)).toHaveLength(1);
    const target = join(dir, 'bashrc');
    writeFileSync(target, 'echo hi\n');
    const link = join(dir, 'LINKED.md');
    symlinkSync(target, link);
    const r = await runCli(args(link));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('symbolic link');
    expect(readFileSync(target, 'utf8')).toBe('echo hi\n');
  }, 30_000);
});
