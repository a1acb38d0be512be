// The real Claude Code CLI (the agent image) in `airlock run` sessions logged in with a Claude
// subscription kept on the host, against local stand-ins of Claude's token endpoint and API
// (test PKI on 127.0.0.1, reached through --resolve as platform.claude.com:443 and
// api.anthropic.com:443; nothing leaves this machine).
//   (b) full login: the session gets a placeholder ~/.claude/.credentials.json whose expiresAt is
//       in the past; Claude Code refreshes through Airlock (which refreshes the real pair on the
//       host and answers with placeholders) and gets its reply;
//   (a) env token: CLAUDE_CODE_OAUTH_TOKEN holds a placeholder of a `claude setup-token` token.
// After each run, every file the session wrote (its login store included) and its environment are
// searched for every real token with secretLeaks.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { chmodSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAuditLines } from '../../src/audit/report.js';
import type { AuditEntry } from '../../src/audit/entry.js';
import { buildTestImage, describeDocker, ensureAgentImage, ensureRelayImage, removeTestImages } from '../helpers/docker.js';
import { createTestPki, freePort, rmTmp, runCli, startHttpsUpstream, tmpDir, waitFor } from '../helpers/servers.js';
import { existsSync } from 'node:fs';
import type { ProcessResult, TestPki, TestUpstream } from '../helpers/servers.js';
import { sessionSummary, spawnCli, waitExit } from './run-helpers.js';
import { secretLeaks } from '../helpers/secret-leaks.js';
import { claudeApiStandIn, claudeStore, claudeTokenStandIn, realAccess, realRefresh } from '../helpers/claude-login-standin.js';
import type { ClaudeApiStandIn, ClaudeTokenStandIn } from '../helpers/claude-login-standin.js';

const RUN_ID = randomBytes(3).toString('hex');
const REPLY = `Hello from the login stand-in ${randomBytes(4).toString('hex')}`;
// A `claude setup-token` token (mode a): one year, never refreshed.
const SETUP_TOKEN = `sk-ant-oat01-SETUP${randomBytes(24).toString('hex')}`;

const CLAUDE_ENV = [
  'DISABLE_AUTOUPDATER=1',
  'DISABLE_TELEMETRY=1',
  'DISABLE_ERROR_REPORTING=1',
  'DISABLE_BUG_COMMAND=1',
  'CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1',
  'CLAUDE_CODE_MAX_RETRIES=1',
];

// Everything the session wrote during the run (files newer than a marker made first), its login
// store and its environment, put in the bind-mounted workspace: searched for real tokens afterwards.
const DUMP =
  'echo "CLAUDE_EXIT $?"; ' +
  'echo "HOMEFILES $(find ~ -type f | sort | tr "\\n" " ")"; ' +
  'find / -xdev -type f -newer /tmp/.airlock-test-start ! -path "/proc/*" ! -path "/sys/*" ! -path "/workspace/*" 2>/dev/null > /tmp/.written; find ~ -type f >> /tmp/.written; ' +
  'echo "WRITTEN $(wc -l < /tmp/.written)"; ' +
  'tar cf /workspace/written.tar -T /tmp/.written 2>/dev/null; ' +
  'cp ~/.claude/.credentials.json /workspace/store.json 2>/dev/null; ' +
  'cat /proc/self/environ > /workspace/environ; echo DUMPED';
const START = 'touch /tmp/.airlock-test-start; sleep 1; env | sed "s/^/ENV /"; echo "VERSION $(claude --version)"; ';

let image: string;
let relayImage: string;
let pki: TestPki;
let work: string;
let baseEnv: NodeJS.ProcessEnv;
let token: ClaudeTokenStandIn;
let api: ClaudeApiStandIn;
let tokenServer: TestUpstream;
let apiServer: TestUpstream;
let apiToken: () => string;
const stateDirs: string[] = [];

beforeAll(async () => {
  image = process.env.AIRLOCK_RUN_TEST_IMAGE || (await ensureAgentImage());
  relayImage = await ensureRelayImage();
  baseEnv = { ...process.env };
  for (const name of Object.keys(baseEnv)) {
    if (/^AIRLOCK_|_PROXY$|^(http|https|all|no)_proxy$|^DOCKER_HOST$|^ANTHROPIC_|^CLAUDE_/i.test(name)) delete baseEnv[name];
  }
  pki = await createTestPki();
  work = tmpDir('airlock-claude-login-run-');
  chmodSync(work, 0o755);
  token = claudeTokenStandIn({ accessToken: realAccess(), refreshToken: realRefresh() });
  apiToken = () => token.current.accessToken;
  api = claudeApiStandIn(() => apiToken(), REPLY);
  tokenServer = await startHttpsUpstream({ pki, names: ['platform.claude.com'], handler: token.handler });
  apiServer = await startHttpsUpstream({ pki, names: ['api.anthropic.com'], handler: api.handler });
}, 30 * 60_000);

const IMAGE_LABEL = `airlock-test-claude-login=${RUN_ID}`;

afterAll(async () => {
  await removeTestImages(IMAGE_LABEL);
  await Promise.all([tokenServer?.close(), apiServer?.close()]);
  rmTmp(work, pki?.dir, ...stateDirs);
}, 120_000);

function auditSummary(l: AuditEntry): string {
  return `${l.kind} ${l.method} ${l.host}:${l.port}${l.path} ${l.action} ${l.status} ${l.reason} [${l.credentials.join(',')}] ${l.detail ?? ''}`;
}

interface Run {
  result: ProcessResult;
  audit: AuditEntry[];
  stateDir: string;
  /** The bind-mounted workspace with the session's dump. */
  workspace: string;
}

async function runSession(tag: string, policy: string, launcherEnv: NodeJS.ProcessEnv, script: string, sessionImage = image): Promise<Run> {
  const stateDir = tmpDir('airlock-claude-login-state-');
  const workspace = tmpDir('airlock-claude-login-ws-');
  chmodSync(workspace, 0o777);
  stateDirs.push(stateDir, workspace);
  const policyFile = join(work, `${tag}.yaml`);
  writeFileSync(policyFile, policy, { mode: 0o644 });
  const args = [
    'run', '--policy', policyFile, '--image', sessionImage, '--relay-image', relayImage, '--state-dir', stateDir,
    '--name', `airlock-test-claude-login-${tag}-${RUN_ID}`, '--user', '1000:1000',
    '--resolve', `api.anthropic.com:443:127.0.0.1:${apiServer.port}`,
    '--resolve', `platform.claude.com:443:127.0.0.1:${tokenServer.port}`,
    '--upstream-ca', pki.caFile, '--workspace', workspace,
    ...CLAUDE_ENV.flatMap((e) => ['-e', e]),
    '--', 'sh', '-c', script,
  ];
  const result = await runCli(args, { env: { ...baseEnv, ...launcherEnv }, timeoutMs: 600_000 });
  const summary = sessionSummary(result.stderr);
  const audit = summary ? parseAuditLines(readFileSync(summary.audit, 'utf8')) : [];
  return { result, audit, stateDir, workspace };
}

function field(out: string, name: string): string {
  return new RegExp(`^${name} (.*)$`, 'm').exec(out)?.[1] ?? '';
}

/** Every way a real value could have reached the session: its output, the files it wrote, its environment; and the launcher's output, audit and state dir. */
function expectNowhere(secrets: readonly string[], r: Run): void {
  const out = r.result.stdout;
  expect(out).toMatch(/^DUMPED$/m);
  const files = readFileSync(join(r.workspace, 'written.tar'));
  const environ = readFileSync(join(r.workspace, 'environ'));
  expect(Number(field(out, 'WRITTEN')), 'files the session wrote').toBeGreaterThan(0);
  expect(files.length).toBeGreaterThan(1024);
  expect(environ.toString('latin1')).toContain('HTTPS_PROXY=');
  for (const s of secrets) {
    expect(secretLeaks(out + r.result.stderr, s), 'session and launcher output').toEqual([]);
    expect(secretLeaks(files, s), 'files the session wrote').toEqual([]);
    expect(secretLeaks(environ, s), 'the session environment').toEqual([]);
    expect(secretLeaks(JSON.stringify(r.audit), s), 'audit').toEqual([]);
    for (const f of readdirSync(r.stateDir, { recursive: true }) as string[]) {
      const path = join(r.stateDir, f);
      if (statSync(path).isFile()) expect(secretLeaks(readFileSync(path), s), path).toEqual([]);
    }
  }
}

describeDocker('airlock run: real Claude Code logged in with a Claude subscription kept on the host', () => {
  it('(b) full login, expiresAt in the past: Claude Code refreshes through Airlock and gets its reply; the stand-ins never see a placeholder; the session never holds a real token; the rotated pair is on the host', async () => {
    const first = { ...token.current };
    const hostDir = tmpDir('airlock-claude-host-');
    stateDirs.push(hostDir);
    const store = join(hostDir, '.credentials.json');
    writeFileSync(store, claudeStore(first, Date.now() - 3_600_000), { mode: 0o600 });
    const grantsBefore = token.grants.length;
    const seenBefore = api.seen.length;
    const r = await runSession(
      'b',
      `version: 1
name: claude-login
allow:
  - host: api.anthropic.com
    ports: [443]
  - host: platform.claude.com
    ports: [443]
credentials:
  - preset: claude-login
    secret: { claude_login: ${store} }
`,
      {},
      START + 'echo "BEFORE $(base64 -w0 ~/.claude/.credentials.json)"; ls -la ~/.claude/.credentials.json | sed "s/^/MODE /"; ' +
        'claude -p "say hi" --output-format text </dev/null; ' + DUMP,
    );
    const out = r.result.stdout;
    const grants = token.grants.slice(grantsBefore);
    const seen = api.seen.slice(seenBefore);
    console.log(
      `claude login session: exit ${r.result.code}; ${field(out, 'VERSION')}; token endpoint saw ${grants.length} grant(s); ` +
        `API saw: ${seen.map((s) => `${s.method} ${s.path} ${s.ok ? 'real' : 'REFUSED'}`).join(', ')}; files in home: ${field(out, 'HOMEFILES')}; ` +
        `files written: ${field(out, 'WRITTEN')}\naudit:\n  ${r.audit.map(auditSummary).join('\n  ')}`,
    );
    expect(r.result.code, `${r.result.stderr}\n${out.slice(-3000)}`).toBe(0);
    expect(out).toMatch(/^VERSION \d+\.\d+\.\d+ \(Claude Code\)$/m);
    expect(out).toMatch(/^CLAUDE_EXIT 0$/m);
    expect(out).toContain(REPLY);
    // The session started with a placeholder store, expired, owner-only, owned by its user.
    const before = JSON.parse(Buffer.from(field(out, 'BEFORE'), 'base64').toString('utf8')) as { claudeAiOauth: Record<string, unknown> };
    expect(before.claudeAiOauth.accessToken).toMatch(/^sk-ant-oat01-airlock-claude-login-/);
    expect(before.claudeAiOauth.refreshToken).toMatch(/^sk-ant-ort01-airlock-/);
    expect(before.claudeAiOauth.expiresAt).toBeLessThan(Date.now());
    expect(before.claudeAiOauth.subscriptionType).toBe('max');
    expect(field(out, 'MODE')).toMatch(/^-rw------- 1 agent agent /);
    // Claude Code refreshed through Airlock: one upstream grant, with the real refresh token.
    expect(grants.length).toBe(1);
    expect(grants[0]).toMatchObject({ grant_type: 'refresh_token', refresh_token: first.refreshToken });
    const tokenLines = r.audit.filter((l) => l.kind === 'request' && l.host === 'platform.claude.com');
    expect(tokenLines.map((l) => `${l.method} ${l.path} ${l.action} ${l.status}`)).toEqual(['POST /v1/oauth/token allow 200']);
    expect(tokenLines[0]!.detail).toBe('claude-login: refresh answered by the proxy with placeholders');
    // Claude Code saved what it got: the new placeholders and expiry, no real token.
    const after = JSON.parse(readFileSync(join(r.workspace, 'store.json'), 'utf8')) as { claudeAiOauth: Record<string, unknown> };
    expect(after.claudeAiOauth.accessToken).toBe(before.claudeAiOauth.accessToken);
    expect(after.claudeAiOauth.refreshToken).toMatch(/^sk-ant-ort01-airlock-/);
    expect(after.claudeAiOauth.refreshToken).not.toBe(before.claudeAiOauth.refreshToken);
    expect(after.claudeAiOauth.expiresAt).toBeGreaterThan(Date.now());
    // The API saw only the real (refreshed) access token, never a placeholder, with the OAuth beta.
    expect(seen.length).toBeGreaterThan(0);
    for (const s of seen) {
      expect(s.bearer, `${s.method} ${s.path}`).toBe(token.current.accessToken);
      expect(s.bearer).not.toMatch(/airlock/);
    }
    expect(seen.some((s) => s.path === '/v1/messages' && s.ok && /oauth-2025-04-20/.test(s.beta ?? ''))).toBe(true);
    for (const body of token.bodies.slice(grantsBefore)) expect(body).not.toMatch(/airlock/);
    // The rotated real pair is on the host, in the user's own store, still 0600.
    const host = JSON.parse(readFileSync(store, 'utf8')) as { claudeAiOauth: Record<string, unknown> };
    expect(host.claudeAiOauth.refreshToken).toBe(token.current.refreshToken);
    expect(host.claudeAiOauth.refreshToken).not.toBe(first.refreshToken);
    expect(statSync(store).mode & 0o777).toBe(0o600);
    expect(r.result.stderr).toMatch(/holds \.claude\/\.credentials\.json and \.claude\.json \(placeholders only\)/);
    expectNowhere(token.issued.flatMap((p) => [p.accessToken, p.refreshToken]), r);
  }, 600_000);

  it('(b) full login, access token revoked upstream while unexpired: the API\'s 401 makes Claude Code refresh through Airlock, which refreshes the real pair, and the retry gets its reply', async () => {
    const revoked = { ...token.current };
    const hostDir = tmpDir('airlock-claude-host-');
    stateDirs.push(hostDir);
    const store = join(hostDir, '.credentials.json');
    writeFileSync(store, claudeStore(revoked, Date.now() + 3_600_000), { mode: 0o600 });
    apiToken = () => (token.current.accessToken === revoked.accessToken ? 'revoked' : token.current.accessToken);
    try {
      const grantsBefore = token.grants.length;
      const seenBefore = api.seen.length;
      const r = await runSession(
        'b401',
        `version: 1
name: claude-login-401
allow:
  - host: api.anthropic.com
    ports: [443]
  - host: platform.claude.com
    ports: [443]
credentials:
  - preset: claude-login
    secret: { claude_login: ${store} }
`,
        {},
        START + 'claude -p "say hi" --output-format text </dev/null; ' + DUMP,
      );
      const out = r.result.stdout;
      const seen = api.seen.slice(seenBefore);
      console.log(`claude 401 session: exit ${r.result.code}; grants ${token.grants.length - grantsBefore}; API saw: ${seen.map((s) => `${s.method} ${s.path} ${s.ok ? 'real' : 'REFUSED'}`).join(', ')}\naudit:\n  ${r.audit.map(auditSummary).join('\n  ')}`);
      expect(r.result.code, `${r.result.stderr}\n${out.slice(-3000)}`).toBe(0);
      expect(out).toContain(REPLY);
      expect(token.grants.length - grantsBefore).toBe(1);
      expect(seen.some((s) => !s.ok && s.bearer === revoked.accessToken)).toBe(true);
      expect(seen.at(-1)).toMatchObject({ path: '/v1/messages', ok: true, bearer: token.current.accessToken });
      for (const s of seen) expect(s.bearer).not.toMatch(/airlock/);
      expect(JSON.parse(readFileSync(store, 'utf8')).claudeAiOauth.refreshToken).toBe(token.current.refreshToken);
      expectNowhere(token.issued.flatMap((p) => [p.accessToken, p.refreshToken]), r);
    } finally {
      apiToken = () => token.current.accessToken;
    }
  }, 600_000);

  it('(a) env token: CLAUDE_CODE_OAUTH_TOKEN holds a placeholder of a setup-token, onboarding is done, the bearer is swapped on api.anthropic.com', async () => {
    apiToken = () => SETUP_TOKEN;
    try {
      const seenBefore = api.seen.length;
      const grantsBefore = token.grants.length;
      const r = await runSession(
        'a',
        `version: 1
name: claude-token
allow:
  - host: api.anthropic.com
    ports: [443]
credentials:
  - preset: anthropic-oauth
    secret: { env: AIRLOCK_CLAUDE_TOKEN }
`,
        { AIRLOCK_CLAUDE_TOKEN: SETUP_TOKEN },
        START + 'echo "ONBOARDING $(cat ~/.claude.json)"; claude -p "say hi" --output-format text </dev/null; ' + DUMP,
      );
      const out = r.result.stdout;
      const seen = api.seen.slice(seenBefore);
      console.log(`claude token session: exit ${r.result.code}; API saw: ${seen.map((s) => `${s.method} ${s.path} ${s.ok ? 'real' : 'REFUSED'}`).join(', ')}\naudit:\n  ${r.audit.map(auditSummary).join('\n  ')}`);
      expect(r.result.code, `${r.result.stderr}\n${out.slice(-3000)}`).toBe(0);
      expect(out).toMatch(/^CLAUDE_EXIT 0$/m);
      expect(out).toContain(REPLY);
      const placeholder = /^ENV CLAUDE_CODE_OAUTH_TOKEN=(.*)$/m.exec(out)?.[1];
      expect(placeholder).toMatch(/^sk-ant-oat01-airlock-anthropic-oauth-/);
      expect(JSON.parse(field(out, 'ONBOARDING'))).toEqual({ hasCompletedOnboarding: true });
      expect(seen.length).toBeGreaterThan(0);
      for (const s of seen) expect(s.bearer, `${s.method} ${s.path}`).toBe(SETUP_TOKEN);
      expect(token.grants.length).toBe(grantsBefore); // a setup-token is never refreshed
      const calls = r.audit.filter((l) => l.kind === 'request' && l.host === 'api.anthropic.com' && l.path.startsWith('/v1/messages'));
      expect(calls.length).toBeGreaterThan(0);
      for (const l of calls) expect(l).toMatchObject({ action: 'allow', status: 200, credentials: ['anthropic-oauth'] });
      expectNowhere([SETUP_TOKEN], r);
    } finally {
      apiToken = () => token.current.accessToken;
    }
  }, 600_000);

  it('(b) through a running airlock proxy (run --daemon): the daemon holds the login, the session gets its placeholder store and its reply', async () => {
    const hostDir = tmpDir('airlock-claude-host-');
    const stateDir = tmpDir('airlock-claude-daemon-');
    const workspace = tmpDir('airlock-claude-login-ws-');
    chmodSync(workspace, 0o777);
    stateDirs.push(hostDir, stateDir, workspace);
    const first = { ...token.current };
    const store = join(hostDir, '.credentials.json');
    writeFileSync(store, claudeStore(first, Date.now() - 60_000), { mode: 0o600 });
    const policyFile = join(work, 'daemon.yaml');
    writeFileSync(policyFile, `version: 1\nname: claude-login-daemon\nallow:\n  - host: api.anthropic.com\n    ports: [443]\n  - host: platform.claude.com\n    ports: [443]\ncredentials:\n  - preset: claude-login\n    secret: { claude_login: ${store} }\n`, { mode: 0o644 });
    const daemon = spawnCli(
      [
        'proxy', '--policy', policyFile, '--listen', `127.0.0.1:${await freePort()}`, '--state-dir', stateDir,
        '--resolve', `api.anthropic.com:443:127.0.0.1:${apiServer.port}`, '--resolve', `platform.claude.com:443:127.0.0.1:${tokenServer.port}`, '--upstream-ca', pki.caFile,
      ],
      baseEnv,
    );
    try {
      await waitFor(() => existsSync(join(stateDir, 'admin.sock')) || daemon.exited(), 30_000, 'the daemon admin socket');
      expect(daemon.exited(), daemon.stderr()).toBe(false);
      const grantsBefore = token.grants.length;
      const result = await runCli(
        [
          'run', '--daemon', '--state-dir', stateDir, '--policy', policyFile, '--image', image, '--relay-image', relayImage,
          '--name', `airlock-test-claude-login-daemon-${RUN_ID}`, '--user', '1000:1000', '--workspace', workspace,
          ...CLAUDE_ENV.flatMap((e) => ['-e', e]),
          '--', 'sh', '-c', START + 'claude -p "say hi" --output-format text </dev/null; ' + DUMP,
        ],
        { env: baseEnv, timeoutMs: 600_000 },
      );
      console.log(`claude daemon session: exit ${result.code}; grants ${token.grants.length - grantsBefore}`);
      expect(result.code, `${result.stderr}\n${result.stdout.slice(-2000)}`).toBe(0);
      expect(result.stdout).toContain(REPLY);
      expect(token.grants.length - grantsBefore).toBe(1);
      expect(JSON.parse(readFileSync(store, 'utf8')).claudeAiOauth.refreshToken).toBe(token.current.refreshToken);
      expectNowhere(token.issued.flatMap((p) => [p.accessToken, p.refreshToken]), { result, audit: [], stateDir, workspace });
    } finally {
      daemon.child.kill('SIGTERM');
      await waitExit(daemon, 15_000).catch(() => {});
    }
  }, 600_000);

  it("an image with its own ~/.claude.json keeps its settings: the onboarding flag is merged in, the file stays the session user's", async () => {
    const tag = `airlock-test-claude-settings:${RUN_ID}`;
    await buildTestImage(tag, `FROM ${image}\nRUN echo '{"theme":"light-daltonized","hasCompletedOnboarding":false}' > /home/agent/.claude.json\n`, IMAGE_LABEL);
    apiToken = () => SETUP_TOKEN;
    try {
      const r = await runSession(
        'merge',
        `version: 1\nname: claude-token\nallow:\n  - host: api.anthropic.com\n    ports: [443]\ncredentials:\n  - preset: anthropic-oauth\n    secret: { env: AIRLOCK_CLAUDE_TOKEN }\n`,
        { AIRLOCK_CLAUDE_TOKEN: SETUP_TOKEN },
        'echo "ONBOARDING $(cat ~/.claude.json)"; stat -c "OWNER %U %a" ~/.claude.json',
        tag,
      );
      expect(r.result.code, r.result.stderr).toBe(0);
      expect(JSON.parse(field(r.result.stdout, 'ONBOARDING'))).toEqual({ theme: 'light-daltonized', hasCompletedOnboarding: true });
      expect(field(r.result.stdout, 'OWNER')).toBe('agent 600');
    } finally {
      apiToken = () => token.current.accessToken;
    }
  }, 600_000);
});
