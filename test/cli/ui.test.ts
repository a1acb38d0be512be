// `airlock proxy --ui` and `airlock ui` (attached to that daemon) with the built CLI: each prints a
// URL whose token opens the view, the view lists the daemon's session (names only) and streams
// its audit lines as a real client's requests end; the attached view's inbox is the daemon's, and
// approving there puts the rule in force in the running session.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_PATH, createTestPki, freePort, rmTmp, runCli, runProcess, startHttpUpstream, startHttpsUpstream, tmpDir, waitFor } from '../helpers/servers.js';
import type { TestPki, TestUpstream } from '../helpers/servers.js';
import { viewGet, viewPost, viewUrlIn } from '../helpers/view.js';

interface Running {
  child: ChildProcess;
  out: () => string;
  exited: Promise<unknown>;
}

function start(args: string[], env: NodeJS.ProcessEnv): Running {
  const child = spawn(process.execPath, [CLI_PATH, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (out += c));
  return { child, out: () => out, exited: new Promise((resolve) => child.once('exit', resolve)) };
}

async function stop(r: Running | undefined) {
  if (r && r.child.exitCode === null && r.child.signalCode === null) {
    r.child.kill('SIGTERM');
    await r.exited;
  }
}

describe('airlock proxy --ui and airlock ui', () => {
  let pki: TestPki;
  let api: TestUpstream;
  let docs: TestUpstream;
  let dir: string;
  let policy: string;
  let daemon: Running;
  let ui: Running | undefined;
  let exports = '';

  beforeAll(async () => {
    pki = await createTestPki();
    api = await startHttpsUpstream({ pki, names: ['api.example.test'] });
    docs = await startHttpUpstream();
    dir = tmpDir();
    policy = join(dir, 'policy.yaml');
    writeFileSync(policy, 'version: 1\nname: ui-cli\nallow:\n  - host: api.example.test\n');
    const port = await freePort();
    daemon = start(
      ['proxy', '--policy', policy, '--listen', `127.0.0.1:${port}`, '--state-dir', join(dir, 'state'), '--first-session', '--ui', '127.0.0.1:0', '--resolve', `api.example.test:443:127.0.0.1:${api.port}`, '--resolve', `docs.example.test:80:127.0.0.1:${docs.port}`, '--upstream-ca', pki.caFile],
      { PATH: process.env.PATH, HOME: dir },
    );
    await waitFor(() => daemon.out().includes('airlock proxy ready') || daemon.child.exitCode !== null, 20_000, 'the daemon to start');
    await waitFor(() => /export HTTPS_PROXY=/.test(daemon.out()), 5_000, 'the first session exports');
    exports = daemon.out();
  }, 30_000);

  afterAll(async () => {
    await stop(ui);
    await stop(daemon);
    await api?.close();
    await docs?.close();
    rmTmp(dir, pki?.dir);
  });

  const curlInSession = (url = 'https://api.example.test/from-cli') =>
    runProcess('sh', ['-c', `${exports.split('\n').filter((l) => /^(export|unset) /.test(l)).join('\n')}\ncurl -sS -o /dev/null -w '%{http_code}' ${url}`], { env: { PATH: process.env.PATH } });

  it('the daemon prints its view URL; the view lists the session and streams its requests', async () => {
    const url = viewUrlIn(daemon.out());
    expect(url, daemon.out()).toBeDefined();
    const sessions = JSON.parse((await viewGet(url!, '/api/sessions')).body) as { id: string; policy: string; rules: { label: string }[] }[];
    expect(sessions).toHaveLength(1);
    expect(sessions[0]!.policy).toBe('ui-cli');
    expect(sessions[0]!.rules.map((r) => r.label)).toEqual(['allow[0] api.example.test']);
    expect((await curlInSession()).stdout).toBe('200');
    const stream = await viewGet(url!, `/api/sessions/${sessions[0]!.id}/events`, /from-cli/);
    expect(stream.body).toContain('"path":"/from-cli"');
  });

  it('airlock ui attaches to the running daemon, never showing a session token', async () => {
    ui = start(['ui', '--state-dir', join(dir, 'state'), '--listen', '127.0.0.1:0'], { PATH: process.env.PATH, HOME: dir });
    await waitFor(() => viewUrlIn(ui!.out()) || ui!.child.exitCode !== null, 15_000, 'airlock ui to print its URL');
    const url = viewUrlIn(ui.out());
    expect(url, ui.out()).toBeDefined();
    const raw = (await viewGet(url!, '/api/sessions')).body;
    const sessions = JSON.parse(raw) as { id: string; rulesKnown: boolean }[];
    expect(sessions).toHaveLength(1);
    expect(sessions[0]!.rulesKnown).toBe(false);
    // The session's proxy password is in the exports; the view has none of it.
    const token = /HTTPS_PROXY='http:\/\/[^:]+:([^@]+)@/.exec(exports)![1]!;
    expect(raw).not.toContain(token);
    const stream = await viewGet(url!, `/api/sessions/${sessions[0]!.id}/events`, /from-cli/);
    expect(stream.body).not.toContain(token);
  });

  it("airlock ui shows the daemon's inbox; Allow there writes the policy file and the running session gets the rule", async () => {
    const url = viewUrlIn(ui!.out())!;
    expect((await curlInSession('http://docs.example.test/from-ui')).stdout).toBe('403');
    const item = await waitFor(async () => {
      const items = JSON.parse((await viewGet(url, '/api/inbox')).body) as { id: string; host: string; path: string; methods: string[]; reason: string }[];
      return items.find((i) => i.host === 'docs.example.test');
    }, 5_000, "the refusal in the attached view's inbox");
    expect(item).toMatchObject({ path: '/from-ui', methods: ['GET'], reason: 'no_rule' });
    // Confirming what was never shown is refused; an unknown item gets the daemon's own 404.
    expect((await viewPost(url, `/api/inbox/${item.id}/approve`)).status).toBe(409);
    const unknown = await viewPost(url, '/api/inbox/999999/preview');
    expect(unknown.status).toBe(404);
    expect(JSON.parse(unknown.body)).toEqual({ error: 'no inbox item 999999 (see `airlock inbox`)' });
    const preview = await viewPost(url, `/api/inbox/${item.id}/preview`);
    expect(preview.status).toBe(200);
    const plan = JSON.parse(preview.body) as { file: string; diff: string; widensCredential?: string };
    expect(plan.file).toBe(policy);
    expect(plan.diff).toContain('+  - host: docs.example.test');
    expect(plan.widensCredential).toBeUndefined();
    expect(readFileSync(policy, 'utf8')).not.toContain('docs.example.test');
    const approved = await viewPost(url, `/api/inbox/${item.id}/approve`);
    expect(approved.status, approved.body).toBe(200);
    expect(readFileSync(policy, 'utf8')).toContain('- host: docs.example.test');
    expect((await curlInSession('http://docs.example.test/from-ui')).stdout).toBe('200');
    expect(docs.requests.map((r) => r.url)).toEqual(['/from-ui']);
    const items = JSON.parse((await viewGet(url, '/api/inbox')).body) as { id: string }[];
    expect(items.map((i) => i.id)).not.toContain(item.id);
    // The attached view reads the version in force from the daemon.
    const sessions = JSON.parse((await viewGet(url, '/api/sessions')).body) as { policyStatus?: { version: string } }[];
    expect(sessions[0]!.policyStatus?.version).toBe(JSON.parse(approved.body).version);
  });

  it('refuses a view address off loopback, and airlock ui without a daemon', async () => {
    const bad = await runCli(['ui', '--listen', '0.0.0.0:0', '--state-dir', join(dir, 'state')]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/loopback only/);
    const none = await runCli(['ui', '--state-dir', join(dir, 'no-daemon-here')]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/no airlock proxy is running/);
  });
});
