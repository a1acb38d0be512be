// An embedded proxy follows its policy file too: `airlock exec` with a command still running,
// its refusal in the session's own inbox (`airlock inbox --session`), `airlock approve --session`
// writing the file, and the same request succeeding in the same command without a restart.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
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

describe('airlock exec follows its policy file', () => {
  it('a refusal lands in the session inbox; approve --session lets the same request through in the running command', async () => {
    const policyFile = join(dir, 'policy.yaml');
    const stateDir = join(dir, 'state');
    const go = join(dir, 'go');
    writeFileSync(policyFile, POLICY);
    const url = 'https://api.github.com/repos/acme/widgets';
    const fetchOnce = `curl -sS -o /dev/null -w '%{http_code}\\n' ${url}`;
    const script = `${fetchOnce}; while [ ! -e ${go} ]; do sleep 0.05; done; ${fetchOnce}`;
    const child = spawn(
      process.execPath,
      [CLI_PATH, 'exec', '--policy', policyFile, '--state-dir', stateDir, '--resolve', `api.github.com:443:127.0.0.1:${api.port}`, '--upstream-ca', pki.caFile, '--', 'sh', '-c', script],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await waitFor(() => stdout.includes('\n') || child.exitCode !== null, 20_000, 'the first request');
      expect(stdout, stderr).toBe('403\n');
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
      expect(stdout).toBe('403\n200\n');
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
