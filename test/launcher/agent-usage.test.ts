// The real Claude Code CLI in an `airlock run` session (agent image, network mode none) against a
// recorded-shape stand-in of the Anthropic Messages API (HTTPS on loopback, reached through
// --resolve as api.anthropic.com:443): the token counts the stand-in reported appear on the
// session's audit lines, in `airlock audit --usage` with the policy's prices, and in the JSON
// lines exported to a unix socket with --audit-export; the real key in none of them. The same for
// the real Codex CLI (the --agent codex image) against the Responses API stand-in, streamed.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { parseAuditLines } from '../../src/audit/report.js';
import { describeDocker, ensureAgentImage, ensureRelayImage } from '../helpers/docker.js';
import { createTestPki, rmTmp, runCli, startHttpsUpstream, tmpDir, waitFor } from '../helpers/servers.js';
import type { TestPki, TestUpstream } from '../helpers/servers.js';
import { sessionSummary } from './run-helpers.js';
import { anthropicStandIn } from '../helpers/llm-standins.js';
import { codexPolicy, responsesStandIn } from '../helpers/openai-standin.js';
import { secretLeaks } from '../helpers/secret-leaks.js';

const RUN_ID = randomBytes(3).toString('hex');
const REAL_KEY = `sk-ant-api03-real${randomBytes(24).toString('hex')}`;
const USAGE = { input: 1234, output: 56, cacheRead: 7000, cacheWrite: 890 };

const POLICY = `
version: 1
name: claude-usage
allow:
  - host: api.anthropic.com
    ports: [443]
credentials:
  - preset: anthropic
    secret: { env: AIRLOCK_ANTHROPIC_KEY }
usage:
  pricing:
    - model: "claude-*"
      input: 3
      output: 15
      cache_read: 0.3
      cache_write: 3.75
`;

const CLAUDE_ENV = [
  'DISABLE_AUTOUPDATER=1',
  'DISABLE_TELEMETRY=1',
  'DISABLE_ERROR_REPORTING=1',
  'DISABLE_BUG_COMMAND=1',
  'CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1',
  'CLAUDE_CODE_MAX_RETRIES=1',
];

let image: string;
let relayImage: string;
let pki: TestPki;
let api: TestUpstream;
let work: string;
let stateDir: string;
// gzip: JSON answers are compressed when the client accepts it, as the real API's are.
const standIn = anthropicStandIn(USAGE, { key: REAL_KEY, gzip: true });

beforeAll(async () => {
  image = process.env.AIRLOCK_RUN_TEST_IMAGE || (await ensureAgentImage());
  relayImage = await ensureRelayImage();
  pki = await createTestPki();
  work = tmpDir('airlock-agent-usage-');
  chmodSync(work, 0o755);
  stateDir = tmpDir('airlock-agent-usage-state-');
  api = await startHttpsUpstream({ pki, names: ['api.anthropic.com'], handler: standIn.handler });
}, 30 * 60_000);

afterAll(async () => {
  await api?.close();
  rmTmp(work, stateDir, pki?.dir);
}, 120_000);

describeDocker('usage of a real Claude Code session', () => {
  it('claude -p: its calls\' token counts are on the audit lines, in audit --usage and in the export', async () => {
    const policy = join(work, 'policy.yaml');
    writeFileSync(policy, POLICY, { mode: 0o644 });
    let exported = '';
    const sockPath = join(work, 'export.sock');
    const server = net.createServer((s) => s.setEncoding('utf8').on('data', (c: string) => (exported += c)));
    await new Promise<void>((r) => server.listen(sockPath, r));
    const env = { ...process.env, AIRLOCK_ANTHROPIC_KEY: REAL_KEY };
    for (const name of Object.keys(env)) if (/^(AIRLOCK_(?!ANTHROPIC_KEY)|ANTHROPIC_|.*_PROXY$|(http|https|all|no)_proxy$)/i.test(name)) delete env[name];
    const result = await runCli(
      [
        'run', '--policy', policy, '--image', image, '--relay-image', relayImage, '--state-dir', stateDir,
        '--name', `airlock-test-usage-${RUN_ID}`, '--user', '1000:1000',
        '--resolve', `api.anthropic.com:443:127.0.0.1:${api.port}`, '--upstream-ca', pki.caFile,
        '--audit-export', `unix:${sockPath}`,
        ...CLAUDE_ENV.flatMap((e) => ['-e', e]),
        '--', 'sh', '-c', 'claude -p "say hi" --output-format text </dev/null; echo "CLAUDE_EXIT $?"',
      ],
      { env, timeoutMs: 600_000 },
    );
    const summary = sessionSummary(result.stderr);
    const audit = summary ? parseAuditLines(readFileSync(summary.audit, 'utf8')) : [];
    const calls = audit.filter((l) => l.kind === 'request' && l.path.startsWith('/v1/messages') && l.status === 200);
    console.log(`claude usage session: exit ${result.code}; stand-in saw ${standIn.calls.length} call(s) (${standIn.calls.map((c) => `${c.stream ? 'stream' : 'json'} ${c.model}`).join(', ')}); usage lines: ${JSON.stringify(calls.map((l) => l.usage))}`);
    expect(result.code, `${result.stderr}\n${result.stdout}`).toBe(0);
    expect(result.stdout).toMatch(/^CLAUDE_EXIT 0$/m);
    expect(result.stdout).toContain('How can I help?');

    // Every Messages call the stand-in answered has its counts on its line.
    const answered = standIn.calls.filter((c) => c.path === '/v1/messages' && c.apiKey === REAL_KEY);
    expect(answered.length).toBeGreaterThan(0);
    expect(answered.some((c) => c.stream)).toBe(true);
    expect(calls).toHaveLength(answered.length);
    const cost = (1234 * 3 + 56 * 15 + 7000 * 0.3 + 890 * 3.75) / 1e6;
    for (const [i, l] of calls.entries()) {
      expect(l.usage, `line ${i}`).toEqual({
        api: 'anthropic', model: answered[i]!.model,
        input_tokens: 1234, output_tokens: 56, cache_read_tokens: 7000, cache_write_tokens: 890,
        cost_usd: Math.round(cost * 1e6) / 1e6,
      });
    }

    // airlock audit --usage: the totals are the calls times the counts.
    const r = await runCli(['audit', '--usage', summary!.id, '--state-dir', stateDir, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    const k = calls.length;
    expect(s.total).toMatchObject({ calls: k, input: 1234 * k, output: 56 * k, cacheRead: 7000 * k, cacheWrite: 890 * k, unpriced: 0, unread: 0 });
    expect(s.total.costUsd).toBeCloseTo(cost * k, 5);
    expect(s.sessions).toHaveLength(1);
    const table = await runCli(['audit', '--usage', '--state-dir', stateDir]);
    expect(table.stdout).toContain(`${summary!.id}`);
    expect(table.stdout).toMatch(new RegExp(`calls ${k}\\s+input ${1234 * k}\\s`));

    // The same lines went to the export socket.
    await waitFor(() => exported.includes('"usage"'), 5_000, 'exported usage lines');
    const exportedCalls = exported.trim().split('\n').map((l) => JSON.parse(l)).filter((l) => l.kind === 'request' && l.usage);
    expect(exportedCalls.map((l) => l.usage)).toEqual(calls.map((l) => l.usage));

    for (const text of [result.stdout, result.stderr, r.stdout, table.stdout, exported, readFileSync(summary!.audit, 'utf8')]) {
      expect(secretLeaks(text, REAL_KEY)).toEqual([]);
    }
    server.close();
  }, 900_000);
});

describeDocker('usage of a real Codex CLI session (Responses API, streamed)', () => {
  const OPENAI_KEY = `sk-proj-real${randomBytes(24).toString('hex')}`;
  let codexImage: string;
  let openai: TestUpstream;
  const responses = responsesStandIn(OPENAI_KEY, 'Hello from the stand-in');

  beforeAll(async () => {
    codexImage = await ensureAgentImage('codex');
    openai = await startHttpsUpstream({ pki, names: ['api.openai.com'], handler: responses.handler });
  }, 30 * 60_000);

  afterAll(async () => {
    await openai?.close();
  });

  it('codex exec: the Responses API call\'s counts (response.completed) are on its line and in audit --usage', async () => {
    const policy = join(work, 'codex.yaml');
    writeFileSync(policy, codexPolicy() + 'usage:\n  pricing:\n    - { model: "*", input: 1.25, output: 10 }\n', { mode: 0o644 });
    const env = { ...process.env, AIRLOCK_OPENAI_KEY: OPENAI_KEY };
    for (const name of Object.keys(env)) if (/^(AIRLOCK_(?!OPENAI_KEY)|OPENAI_|CODEX_|.*_PROXY$|(http|https|all|no)_proxy$)/i.test(name)) delete env[name];
    const result = await runCli(
      [
        'run', '--policy', policy, '--image', codexImage, '--relay-image', relayImage, '--state-dir', stateDir,
        '--name', `airlock-test-usage-codex-${RUN_ID}`, '--user', '1000:1000',
        '--resolve', `api.openai.com:443:127.0.0.1:${openai.port}`, '--upstream-ca', pki.caFile,
        '--', 'sh', '-c', 'codex exec --skip-git-repo-check --sandbox read-only "say hi" </dev/null; echo "CODEX_EXIT $?"',
      ],
      { env, timeoutMs: 600_000 },
    );
    const summary = sessionSummary(result.stderr);
    const audit = summary ? parseAuditLines(readFileSync(summary.audit, 'utf8')) : [];
    const calls = audit.filter((l) => l.kind === 'request' && l.path.startsWith('/v1/responses') && l.status === 200);
    console.log(`codex usage session: exit ${result.code}; stand-in saw ${responses.calls.length} call(s); usage lines: ${JSON.stringify(calls.map((l) => l.usage))}`);
    expect(result.code, `${result.stderr}\n${result.stdout}`).toBe(0);
    expect(result.stdout).toMatch(/^CODEX_EXIT 0$/m);
    const answered = responses.calls.filter((c) => c.bearer === OPENAI_KEY);
    expect(answered.length).toBeGreaterThan(0);
    expect(answered.every((c) => c.stream)).toBe(true);
    expect(calls).toHaveLength(answered.length);
    // The stand-in reports input 12, output 7 in response.completed; priced at 1.25 and 10 per million.
    for (const [i, l] of calls.entries()) {
      expect(l.usage).toEqual({ api: 'openai', model: answered[i]!.model, input_tokens: 12, output_tokens: 7, cost_usd: 0.000085 });
    }
    const r = await runCli(['audit', '--usage', summary!.id, '--state-dir', stateDir, '--json']);
    expect(JSON.parse(r.stdout).total).toMatchObject({ calls: calls.length, input: 12 * calls.length, output: 7 * calls.length });
    for (const text of [result.stdout, result.stderr, r.stdout, readFileSync(summary!.audit, 'utf8')]) expect(secretLeaks(text, OPENAI_KEY)).toEqual([]);
  }, 900_000);
});
