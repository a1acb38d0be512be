// Real agent tools in `airlock run`'s default network mode (none): Claude Code against a local
// stand-in of the Anthropic Messages API, and npm against a local stand-in registry. The stand-ins
// are HTTPS servers of this test (test PKI) on 127.0.0.1, reached by the proxy through --resolve
// as api.anthropic.com:443 and registry.npmjs.org:443; nothing leaves this machine.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import type http from 'node:http';
import { join } from 'node:path';
import { parseAuditLines } from '../../src/audit/report.js';
import type { AuditEntry } from '../../src/audit/entry.js';
import { describeDocker, describeNeeding, ensureAgentImage, ensureRelayImage } from '../helpers/docker.js';
import { createTestPki, rmTmp, runCli, startHttpsUpstream, tmpDir } from '../helpers/servers.js';
import type { ProcessResult, TestPki, TestUpstream } from '../helpers/servers.js';
import { sessionSummary } from './run-helpers.js';
import { npmStandIn } from '../helpers/package-standins.js';

const RUN_ID = randomBytes(3).toString('hex');
const SLOW = 30 * 60_000;

// The real key: fresh per run, so no image layer or earlier run can hold it.
const REAL_KEY = `sk-ant-api03-real${randomBytes(24).toString('hex')}`;
const REPLY = `Hello from the stand-in ${randomBytes(4).toString('hex')}`;

const CLAUDE_POLICY = `
version: 1
name: claude-test
allow:
  - host: api.anthropic.com
    ports: [443]
credentials:
  - preset: anthropic
    secret: { env: AIRLOCK_ANTHROPIC_KEY }
`;

// The control: the same, without the credential; the session is given a value that is no key.
const CLAUDE_POLICY_NO_CREDENTIAL = `
version: 1
name: claude-test-no-credential
allow:
  - host: api.anthropic.com
    ports: [443]
`;
const NOT_A_KEY = 'sk-ant-api03-not-a-real-key';

const NPM_POLICY = `
version: 1
name: npm-test
allow:
  - host: registry.npmjs.org
    methods: [GET, HEAD]
    ports: [443]
`;

const PKG = 'airlock-tiny-pkg';
const PKG_VERSION = '1.0.0';

/** Claude Code without first-run, update, telemetry or error-report traffic. */
const CLAUDE_ENV = [
  'DISABLE_AUTOUPDATER=1',
  'DISABLE_TELEMETRY=1',
  'DISABLE_ERROR_REPORTING=1',
  'DISABLE_BUG_COMMAND=1',
  'CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1',
  // A refused key fails at once instead of after minutes of retries.
  'CLAUDE_CODE_MAX_RETRIES=1',
];

let image: string;
let relayImage: string;
let pki: TestPki;
let anthropic: TestUpstream;
let registry: TestUpstream;
let work: string;
let baseEnv: NodeJS.ProcessEnv;
const stateDirs: string[] = [];

/** Request headers the Anthropic stand-in saw, with each request's path. */
const messages: Array<{ path: string; headers: http.IncomingHttpHeaders; stream: boolean; model: string }> = [];

function sse(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/**
 * The Messages API, as far as Claude Code needs it: POST /v1/messages, streamed (SSE) or not.
 * Answers 401 unless the request carries the real key, as the real API would.
 */
const anthropicHandler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (req.method !== 'POST' || path !== '/v1/messages') {
      res.writeHead(404, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ type: 'error', error: { type: 'not_found_error', message: `${req.method} ${path}` } }));
      return;
    }
    let body: { stream?: boolean; model?: string } = {};
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      /* recorded as is */
    }
    const model = body.model ?? 'claude-test';
    messages.push({ path, headers: { ...req.headers }, stream: Boolean(body.stream), model });
    const bearer = /^Bearer (.*)$/.exec(String(req.headers.authorization ?? ''))?.[1];
    if (req.headers['x-api-key'] !== REAL_KEY && bearer !== REAL_KEY) {
      res.writeHead(401, { 'Content-Type': 'application/json', 'request-id': 'req_standin' });
      res.end(JSON.stringify({ type: 'error', error: { type: 'authentication_error', message: 'invalid x-api-key' } }));
      return;
    }
    const id = `msg_standin${randomBytes(6).toString('hex')}`;
    const usage = { input_tokens: 12, output_tokens: 7, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 };
    if (!body.stream) {
      const json = JSON.stringify({
        id, type: 'message', role: 'assistant', model,
        content: [{ type: 'text', text: REPLY }],
        stop_reason: 'end_turn', stop_sequence: null, usage,
      });
      res.writeHead(200, { 'Content-Type': 'application/json', 'request-id': 'req_standin' });
      res.end(json);
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', 'request-id': 'req_standin' });
    res.write(sse('message_start', {
      type: 'message_start',
      message: { id, type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: { ...usage, output_tokens: 1 } },
    }));
    res.write(sse('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }));
    const words = REPLY.split(' ');
    for (const [i, w] of words.entries()) {
      res.write(sse('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: i ? ` ${w}` : w } }));
    }
    res.write(sse('content_block_stop', { type: 'content_block_stop', index: 0 }));
    res.write(sse('message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 7 } }));
    res.write(sse('message_stop', { type: 'message_stop' }));
    res.end();
  });
};

function auditSummary(l: AuditEntry): string {
  return `${l.kind} ${l.method} ${l.host}:${l.port}${l.path} ${l.action} ${l.status} ${l.reason} [${l.credentials.join(',')}]`;
}

function newStateDir(): string {
  const dir = tmpDir('airlock-agents-state-');
  stateDirs.push(dir);
  return dir;
}

function writePolicy(name: string, text: string): string {
  const file = join(work, name);
  writeFileSync(file, text, { mode: 0o644 });
  return file;
}

/** One `airlock run` session to completion. */
async function runSession(opts: {
  tag: string;
  policy: string;
  resolve: string[];
  env?: string[];
  command: string[];
  launcherEnv?: NodeJS.ProcessEnv;
  /** --user; null: none, so the launcher picks (the image's user when root starts it). */
  user?: string | null;
}): Promise<{ result: ProcessResult; audit: AuditEntry[]; stateDir: string }> {
  const stateDir = newStateDir();
  const name = `airlock-test-agents-${opts.tag}-${RUN_ID}-${randomBytes(2).toString('hex')}`;
  const args = [
    'run', '--policy', opts.policy, '--image', image, '--relay-image', relayImage, '--state-dir', stateDir, '--name', name,
    // The image's own user, with a home of its own: Claude Code keeps its settings there.
    ...(opts.user === null ? [] : ['--user', opts.user ?? '1000:1000']),
    ...opts.resolve.flatMap((r) => ['--resolve', r]),
    '--upstream-ca', pki.caFile,
    ...(opts.env ?? []).flatMap((e) => ['-e', e]),
    '--', ...opts.command,
  ];
  const result = await runCli(args, { env: { ...baseEnv, ...opts.launcherEnv }, timeoutMs: 600_000 });
  const summary = sessionSummary(result.stderr);
  const audit = summary ? parseAuditLines(readFileSync(summary.audit, 'utf8')) : [];
  return { result, audit, stateDir };
}

beforeAll(async () => {
  image = process.env.AIRLOCK_RUN_TEST_IMAGE || (await ensureAgentImage());
  relayImage = await ensureRelayImage();
  baseEnv = { ...process.env };
  for (const name of Object.keys(baseEnv)) {
    if (/^AIRLOCK_|_PROXY$|^(http|https|all|no)_proxy$|^DOCKER_HOST$|^ANTHROPIC_/i.test(name)) delete baseEnv[name];
  }
  pki = await createTestPki();
  work = tmpDir('airlock-agents-test-');
  chmodSync(work, 0o755);
  anthropic = await startHttpsUpstream({ pki, names: ['api.anthropic.com'], handler: anthropicHandler });
  const npm = await npmStandIn(work, PKG, `tiny package ${RUN_ID}`);
  registry = await startHttpsUpstream({ pki, names: ['registry.npmjs.org'], handler: npm.handler });
}, SLOW);

afterAll(async () => {
  await Promise.all([anthropic?.close(), registry?.close()]);
  rmTmp(work, pki?.dir, ...stateDirs);
}, 120_000);

describeDocker('airlock run, network mode none: real Claude Code against a local Messages API', () => {
  const claudeScript =
    // The whole environment the session has, then Claude Code, non-interactive.
    'env | sed "s/^/ENV /"; echo "VERSION $(claude --version)"; ' +
    'claude -p "say hi" --output-format text </dev/null; echo "CLAUDE_EXIT $?"';

  it('claude -p gets the stand-in\'s answer; the stand-in sees the real key, the session only its placeholder', async () => {
    const before = messages.length;
    const beforeAny = anthropic.requests.length;
    const { result, audit } = await runSession({
      tag: 'claude',
      policy: writePolicy('claude.yaml', CLAUDE_POLICY),
      resolve: [`api.anthropic.com:443:127.0.0.1:${anthropic.port}`],
      env: CLAUDE_ENV,
      command: ['sh', '-c', claudeScript],
      launcherEnv: { AIRLOCK_ANTHROPIC_KEY: REAL_KEY },
    });
    const out = result.stdout;
    const seen = messages.slice(before);
    console.log(
      `claude session: exit ${result.code}; ${out.match(/^VERSION .*$/m)?.[0]}; ` +
        `stand-in saw ${seen.length} message request(s) (${seen.map((m) => `${m.stream ? 'stream' : 'json'} ${m.model}`).join(', ')}); ` +
        `audit:\n  ${audit.map(auditSummary).join('\n  ')}`,
    );
    expect(result.code, `${result.stderr}\n${out}`).toBe(0);
    expect(out).toMatch(/^VERSION \d+\.\d+\.\d+ \(Claude Code\)$/m);
    // Claude Code printed what the stand-in said.
    expect(out).toMatch(/^CLAUDE_EXIT 0$/m);
    expect(out).toContain(REPLY);
    // The session only ever had the placeholder.
    const key = /^ENV ANTHROPIC_API_KEY=(.*)$/m.exec(out)?.[1];
    expect(key).toMatch(/^sk-ant-api03-/);
    expect(key).not.toBe(REAL_KEY);
    expect(out.includes(REAL_KEY), 'the real key in the session output').toBe(false);
    expect(result.stderr.includes(REAL_KEY), 'the real key in the launcher output').toBe(false);
    // On the way out the proxy swapped in the real key, in every request.
    expect(seen.length).toBeGreaterThan(0);
    for (const m of seen) {
      const sent = [m.headers['x-api-key'], String(m.headers.authorization ?? '').replace(/^Bearer /, '')].filter(Boolean);
      expect(sent).toContain(REAL_KEY);
      expect(sent).not.toContain(key);
    }
    expect(seen.some((m) => m.stream)).toBe(true);
    // Its other calls (settings, policy limits: 404 here) carried the real key too when they carried
    // one, never the placeholder.
    for (const q of anthropic.requests.slice(beforeAny)) {
      if (q.headers['x-api-key'] !== undefined) expect(q.headers['x-api-key'], `${q.method} ${q.url}`).toBe(REAL_KEY);
    }
    // The audit: the Messages API calls, allowed, with the anthropic credential; no key.
    const calls = audit.filter((l) => l.kind === 'request' && l.host === 'api.anthropic.com' && l.path.startsWith('/v1/messages'));
    expect(calls.length).toBe(seen.length);
    for (const l of calls) {
      expect(l).toMatchObject({ method: 'POST', action: 'allow', status: 200, credentials: ['anthropic'] });
    }
    expect(JSON.stringify(audit).includes(REAL_KEY)).toBe(false);
    // Anything else Claude Code tried went nowhere but the audit.
    for (const l of audit.filter((e) => e.host !== 'api.anthropic.com')) expect(l.action).toBe('deny');
  }, 600_000);

  it('control: without the credential in the policy, the stand-in never sees the real key and Claude Code gets no answer', async () => {
    const before = messages.length;
    const { result, audit } = await runSession({
      tag: 'claude-nocred',
      policy: writePolicy('claude-no-credential.yaml', CLAUDE_POLICY_NO_CREDENTIAL),
      resolve: [`api.anthropic.com:443:127.0.0.1:${anthropic.port}`],
      env: [...CLAUDE_ENV, `ANTHROPIC_API_KEY=${NOT_A_KEY}`],
      command: ['sh', '-c', claudeScript],
      launcherEnv: { AIRLOCK_ANTHROPIC_KEY: REAL_KEY },
    });
    const seen = messages.slice(before);
    console.log(
      `claude control session: stand-in saw ${seen.length} request(s); last lines: ${result.stdout.trim().split('\n').slice(-2).join(' | ')}; ` +
        `audit:\n  ${audit.map(auditSummary).join('\n  ')}`,
    );
    expect(seen.length, `${result.stderr}\n${result.stdout}`).toBeGreaterThan(0);
    for (const m of seen) {
      expect([m.headers['x-api-key'], m.headers.authorization]).not.toContain(REAL_KEY);
      expect(m.headers['x-api-key']).toBe(NOT_A_KEY);
    }
    expect(result.stdout).not.toContain(REPLY);
    expect(result.stdout).not.toMatch(/^CLAUDE_EXIT 0$/m);
    const calls = audit.filter((l) => l.host === 'api.anthropic.com' && l.kind === 'request');
    expect(calls.length).toBeGreaterThan(0);
    for (const l of calls) expect(l.credentials).toEqual([]);
  }, 600_000);
});

describeNeeding(
  'airlock run started by root without sudo: Claude Code in unattended mode',
  process.getuid?.() === 0 ? null : 'not root (the test starts airlock run as root)',
  () => {
    it('runs claude --dangerously-skip-permissions as the image\'s non-root user and gets the stand-in\'s answer', async () => {
      const before = messages.length;
      const { result } = await runSession({
        tag: 'claude-root',
        policy: writePolicy('claude-root.yaml', CLAUDE_POLICY),
        resolve: [`api.anthropic.com:443:127.0.0.1:${anthropic.port}`],
        env: CLAUDE_ENV,
        command: ['sh', '-c', 'echo "UID $(id -u)"; claude -p "say hi" --dangerously-skip-permissions --output-format text </dev/null; echo "CLAUDE_EXIT $?"'],
        launcherEnv: { AIRLOCK_ANTHROPIC_KEY: REAL_KEY, SUDO_UID: undefined, SUDO_GID: undefined },
        user: null,
      });
      const out = result.stdout;
      expect(result.code, `${result.stderr}\n${out}`).toBe(0);
      expect(out).toMatch(/^UID 1000$/m);
      // As root, Claude Code would say: --dangerously-skip-permissions cannot be used with root/sudo privileges.
      expect(out + result.stderr).not.toMatch(/cannot be used with root/);
      expect(out).toMatch(/^CLAUDE_EXIT 0$/m);
      expect(out).toContain(REPLY);
      expect(messages.length).toBeGreaterThan(before);
      expect(result.stderr).toMatch(/the session runs as the image's user 1000:1000; --user UID:GID picks another/);
    }, 600_000);
  },
);

describeDocker('airlock run, network mode none: npm install from a local registry', () => {
  it('installs a package through the proxy; the stand-in registry served it and the audit shows the requests', async () => {
    const before = registry.requests.length;
    const { result, audit } = await runSession({
      tag: 'npm',
      policy: writePolicy('npm.yaml', NPM_POLICY),
      resolve: [`registry.npmjs.org:443:127.0.0.1:${registry.port}`],
      command: [
        'sh', '-c',
        'set -e; mkdir -p /tmp/app && cd /tmp/app && echo "{}" > package.json; ' +
          `npm install --no-audit --no-fund --no-update-notifier --loglevel=error ${PKG}; ` +
          `echo "REQUIRE $(node -p 'require("${PKG}")')"; echo "LOCK $(jq -r '.packages["node_modules/${PKG}"].resolved' package-lock.json)"`,
      ],
    });
    const seen = registry.requests.slice(before).map((q) => `${q.method} ${q.url}`);
    console.log(`npm session: exit ${result.code}; registry saw: ${seen.join(', ')}; audit:\n  ${audit.map(auditSummary).join('\n  ')}`);
    expect(result.code, `${result.stderr}\n${result.stdout}`).toBe(0);
    expect(result.stdout).toContain(`REQUIRE tiny package ${RUN_ID}`);
    expect(result.stdout).toContain(`LOCK https://registry.npmjs.org/${PKG}/-/${PKG}-${PKG_VERSION}.tgz`);
    expect(seen).toContain(`GET /${PKG}`);
    expect(seen).toContain(`GET /${PKG}/-/${PKG}-${PKG_VERSION}.tgz`);
    const requests = audit.filter((l) => l.kind === 'request' && l.host === 'registry.npmjs.org');
    expect(requests.map((l) => `${l.method} ${l.path} ${l.action} ${l.status}`)).toEqual(
      expect.arrayContaining([`GET /${PKG} allow 200`, `GET /${PKG}/-/${PKG}-${PKG_VERSION}.tgz allow 200`]),
    );
    expect(audit.filter((l) => l.action !== 'allow')).toEqual([]);
  }, 600_000);
});
