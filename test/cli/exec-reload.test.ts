// An embedded proxy follows its policy file too: `airlock exec` with a command still running,
// its refusal in the session's own inbox (`airlock inbox --session`), `airlock approve --session`
// writing the file, and the same request succeeding in the same command without a restart.
// Then the agent's side of it: a script (curl only) is refused, reads why at
// http://airlock.internal/, files a request for access, the operator approves it with `airlock
// approve ID --yes`, and the request succeeds in the still-running session. Also: exec prints
// the note on the endpoint and writes it into the agent's instructions with --agent-notes, once,
// and never through a symlink.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI_PATH, createTestPki, rmTmp, runCli, startHttpsUpstream, tmpDir, waitFor } from '../helpers/servers.js';
import type { TestPki, TestUpstream } from '../helpers/servers.js';
import { parsePolicy } from '../../src/policy/index.js';
import { parseAuditLines } from '../../src/audit/report.js';

const POLICY = `version: 1
name: exec-reload
# only the docs, for now
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
  dir = tmpDir('airlock-exec-reload-');
}, 30_000);

afterAll(async () => {
  await api?.close();
  rmTmp(dir, pki?.dir);
});

/** `airlock exec` with `script` run by sh, against the test upstream; its output as it comes. */
function startExec(policyFile: string, stateDir: string, script: string, extra: string[] = []) {
  const child = spawn(
    process.execPath,
    [CLI_PATH, 'exec', '--policy', policyFile, '--state-dir', stateDir, ...extra, '--resolve', `api.github.com:443:127.0.0.1:${api.port}`, '--upstream-ca', pki.caFile, '--', 'sh', '-c', script],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const out = { stdout: '', stderr: '' };
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out.stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (out.stderr += c));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, out, exited };
}

describe('airlock exec follows its policy file', () => {
  it('a refusal lands in the session inbox; approve --session lets the same request through in the running command', async () => {
    const policyFile = join(dir, 'policy.yaml');
    const stateDir = join(dir, 'state');
    const go = join(dir, 'go');
    writeFileSync(policyFile, POLICY);
    const url = 'https://api.github.com/repos/acme/widgets';
    const fetchOnce = `curl -sS -o /dev/null -w '%{http_code}\\n' ${url}`;
    const script = `${fetchOnce}; while [ ! -e ${go} ]; do sleep 0.05; done; ${fetchOnce}`;
    const { child, out, exited } = startExec(policyFile, stateDir, script);
    try {
      await waitFor(() => out.stdout.includes('\n') || child.exitCode !== null, 20_000, 'the first request');
      expect(out.stdout, out.stderr).toBe('403\n');
      const sessionId = readdirSync(join(stateDir, 'sessions'))[0]!;
      expect(existsSync(join(stateDir, 'sessions', sessionId, 'control.sock'))).toBe(true);

      const inbox = await waitFor(async () => {
        const r = await runCli(['inbox', '--session', sessionId, '--state-dir', stateDir]);
        return r.stdout.includes('/repos/acme/widgets') ? r : null;
      }, 5_000, 'the inbox item');
      const id = /^\s*(\d+)\s/.exec(inbox.stdout)?.[1];
      expect(id, inbox.stdout).toBeDefined();
      const reload = await runCli(['policy', 'reload', '--session', sessionId, '--state-dir', stateDir]);
      expect(reload.code, reload.stderr).toBe(0);
      expect(reload.stdout).toContain(`version ${parsePolicy(POLICY, 'x').digest} unchanged`);

      const approved = await runCli(['approve', id!, '--session', sessionId, '--yes', '--state-dir', stateDir]);
      expect(approved.code, approved.stderr).toBe(0);
      expect(approved.stdout).toContain('+    paths: [/repos/acme/widgets]');
      expect(readFileSync(policyFile, 'utf8')).toContain('# only the docs, for now\n');
      writeFileSync(go, '');
      expect(await exited).toBe(0);
      expect(out.stdout).toBe('403\n200\n');
      const lines = parseAuditLines(readFileSync(join(stateDir, 'sessions', sessionId, 'audit.jsonl'), 'utf8')).filter((l) => l.path === '/repos/acme/widgets');
      expect(lines.map((l) => [l.status, l.policy_version])).toEqual([
        [403, parsePolicy(POLICY, 'x').digest],
        [200, parsePolicy(readFileSync(policyFile, 'utf8'), 'x').digest],
      ]);
      // The control socket and its token go with the session.
      expect(existsSync(join(stateDir, 'sessions', sessionId, 'control.sock'))).toBe(false);
      expect(existsSync(join(stateDir, 'sessions', sessionId, 'control.token'))).toBe(false);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 60_000);
});

describe('request access from inside airlock exec', () => {
  it('refused, reads why, asks; the operator approves; the same request succeeds in the running session', async () => {
    const policyFile = join(dir, 'policy-ask.yaml');
    const stateDir = join(dir, 'state-ask');
    const go = join(dir, 'go-ask');
    const notes = join(dir, 'CLAUDE.md');
    writeFileSync(policyFile, POLICY);
    writeFileSync(notes, '# Project\n\nBuild with make.\n');
    const url = 'https://api.github.com/repos/acme/widgets';
    const served = api.requests.length;
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
    const { child, out, exited } = startExec(policyFile, stateDir, script, ['--agent-notes', notes]);
    try {
      await waitFor(() => out.stdout.includes('--- asked') || child.exitCode !== null, 20_000, 'the agent to ask');
      // Refused, with the policy and where to ask in what curl printed.
      const [refused, why, asked] = [out.stdout.split('--- why')[0]!, out.stdout.split('--- why')[1]!.split('--- ask')[0]!, out.stdout.split('--- ask')[1]!.split('--- asked')[0]!];
      expect(refused, out.stderr).toContain('status=403');
      expect(JSON.parse(refused.split('\nstatus=')[0]!)).toMatchObject({ policy: 'exec-reload', reason: 'path_not_allowed' });
      expect(refused).toContain('http://airlock.internal/request-access');
      expect(JSON.parse(why)).toMatchObject({ decision: 'deny', reason: 'path_not_allowed', rule: 'allow[0] api.github.com' });
      const filed = JSON.parse(asked);
      expect(filed).toMatchObject({ state: 'open' });
      // exec told the agent about the endpoint, and wrote it into its instructions.
      expect(out.stderr).toContain('http://airlock.internal/request-access');
      expect(readFileSync(notes, 'utf8')).toMatch(/^# Project\n\nBuild with make\.\n\n## Network access \(Airlock\)\n\n.*airlock\.internal/s);

      const sessionId = readdirSync(join(stateDir, 'sessions'))[0]!;
      const inbox = await runCli(['inbox', '--session', sessionId, '--state-dir', stateDir]);
      expect(inbox.stdout).toContain('list the widgets for the release notes');
      const approved = await runCli(['approve', filed.id, '--session', sessionId, '--yes', '--state-dir', stateDir]);
      expect(approved.code, approved.stderr).toBe(0);
      expect(readFileSync(policyFile, 'utf8')).toContain('/repos/acme/widgets');
      writeFileSync(go, '');
      expect(await exited).toBe(0);
      expect(out.stdout).toContain('after=200\n');
      expect(api.requests.slice(served).map((r) => r.url)).toEqual(['/repos/acme/widgets']);
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
