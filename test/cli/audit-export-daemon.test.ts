// `airlock proxy --audit-export`: the daemon, as an operator runs it, sends its sessions' audit
// lines to an OTLP/HTTP collector stand-in and a unix socket reader; when the collector goes
// away, curl through the session still gets its answers at once, and the daemon says on stderr
// how many lines the export lost. No secret reaches either.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { CLI_PATH, createTestPki, freePort, rmTmp, runCli, runProcess, startHttpsUpstream, tmpDir, waitFor } from '../helpers/servers.js';
import type { TestPki, TestUpstream } from '../helpers/servers.js';
import { anthropicStandIn } from '../helpers/llm-standins.js';
import { secretLeaks } from '../helpers/secret-leaks.js';

const KEY = 'sk-ant-api03-daemonExportKey0123456789abcdefghijklm';
const POLICY = `version: 1
name: daemon-export
allow:
  - host: api.anthropic.com
credentials:
  - preset: anthropic
    secret: { env: AIRLOCK_DAEMON_EXPORT_KEY }
`;

let pki: TestPki;
let api: TestUpstream;
let dir: string;
let daemon: ChildProcess;
let daemonLog = '';
let env: NodeJS.ProcessEnv;
let socketText = '';
let socketServer: net.Server;
const bodies: string[] = [];
let collector: http.Server;
let collectorPort: number;
const standIn = anthropicStandIn({ input: 5, output: 6, cacheRead: 0, cacheWrite: 0 }, { key: KEY });

beforeAll(async () => {
  pki = await createTestPki();
  api = await startHttpsUpstream({ pki, names: ['api.anthropic.com'], handler: standIn.handler });
  dir = tmpDir('airlock-daemon-export-');
  const stateDir = join(dir, 'state');
  const policyFile = join(dir, 'policy.yaml');
  writeFileSync(policyFile, POLICY);
  const sock = join(dir, 'export.sock');
  socketServer = net.createServer((s) => s.setEncoding('utf8').on('data', (c: string) => (socketText += c)));
  await new Promise<void>((r) => socketServer.listen(sock, r));
  collector = http.createServer((req, res) => {
    let b = '';
    req.setEncoding('utf8').on('data', (c: string) => (b += c));
    req.on('end', () => {
      bodies.push(b);
      res.writeHead(200, { 'Content-Type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => collector.listen(0, '127.0.0.1', r));
  collectorPort = (collector.address() as net.AddressInfo).port;
  const port = await freePort();
  daemon = spawn(
    process.execPath,
    [
      CLI_PATH, 'proxy', '--policy', policyFile, '--listen', `127.0.0.1:${port}`, '--state-dir', stateDir,
      '--resolve', `api.anthropic.com:443:127.0.0.1:${api.port}`, '--upstream-ca', pki.caFile,
      '--audit-export', `otlp:http://127.0.0.1:${collectorPort}`, '--audit-export', `unix:${sock}`,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, AIRLOCK_DAEMON_EXPORT_KEY: KEY } },
  );
  daemon.stderr!.setEncoding('utf8').on('data', (c: string) => (daemonLog += c));
  daemon.stdout!.resume();
  await waitFor(() => daemonLog.includes('airlock proxy ready') || daemon.exitCode !== null, 20_000, 'the daemon to start');
  expect(daemon.exitCode, daemonLog).toBeNull();
  const created = await runCli(['session', 'create', '--state-dir', stateDir, '--json']);
  expect(created.code, created.stderr).toBe(0);
  const info = JSON.parse(created.stdout) as { proxy_url: string; bundle: string; env: Record<string, string> };
  env = { PATH: process.env.PATH, HTTPS_PROXY: info.proxy_url, CURL_CA_BUNDLE: info.bundle, ...info.env };
}, 60_000);

afterAll(async () => {
  if (daemon && daemon.exitCode === null && daemon.signalCode === null) {
    daemon.kill('SIGKILL');
    await new Promise((resolve) => daemon.once('exit', resolve));
  }
  socketServer?.close();
  collector?.closeAllConnections();
  collector?.close();
  await api?.close();
  rmTmp(dir, pki?.dir);
});

/** One Messages API call by curl through the session; its status and how long it took. */
async function curl(): Promise<{ status: string; ms: number }> {
  const t = performance.now();
  const r = await runProcess('sh', ['-c', `curl -s -o /dev/null -w '%{http_code}' -X POST -H "x-api-key: $ANTHROPIC_API_KEY" -H 'content-type: application/json' -d '{"model":"claude-haiku-4-5"}' https://api.anthropic.com/v1/messages`], { env });
  return { status: r.stdout, ms: performance.now() - t };
}

describe('the daemon with --audit-export', () => {
  it('sends each line to the collector and the socket; with the collector gone it keeps serving and reports the loss', async () => {
    const before: number[] = [];
    for (let i = 0; i < 10; i++) {
      const r = await curl();
      expect(r.status).toBe('200');
      before.push(r.ms);
    }
    await waitFor(() => bodies.join('').split('"request"').length > 10 && socketText.includes('claude-haiku-4-5'), 10_000, 'the exported lines');
    const otlp = bodies.map((b) => JSON.parse(b));
    const attrs = otlp.flatMap((b) => b.resourceLogs.flatMap((rl: any) => rl.scopeLogs.flatMap((sl: any) => sl.logRecords.map((r: any) => Object.fromEntries(r.attributes.map((a: any) => [a.key, a.value]))))));
    const call = attrs.find((a) => a['airlock.kind']?.stringValue === 'request');
    expect(call['gen_ai.response.model']).toEqual({ stringValue: 'claude-haiku-4-5' });
    expect(Number(call['gen_ai.usage.output_tokens'].intValue)).toBe(6);
    const line = socketText.trim().split('\n').map((l) => JSON.parse(l)).find((l) => l.kind === 'request');
    expect(line).toMatchObject({ host: 'api.anthropic.com', status: 200, credentials: ['anthropic'], usage: { model: 'claude-haiku-4-5', input_tokens: 5, output_tokens: 6 } });

    // The collector goes away: requests are answered as before; the loss is reported.
    collector.closeAllConnections();
    await new Promise<void>((r) => collector.close(() => r()));
    const times: number[] = [];
    for (let i = 0; i < 10; i++) {
      const r = await curl();
      expect(r.status).toBe('200');
      times.push(r.ms);
    }
    await waitFor(() => /audit export to otlp:http:\/\/127\.0\.0\.1:\d+\/v1\/logs dropped \d+ line\(s\)/.test(daemonLog), 15_000, 'the drop report');
    // The socket reader still got every line.
    await waitFor(() => socketText.trim().split('\n').filter((l) => l.includes('"kind":"request"')).length === 20, 5_000, 'twenty request lines on the socket');
    const p50 = (xs: number[]) => [...xs].sort((a, b) => a - b)[5]!;
    console.log(`daemon export: curl p50 ${p50(before).toFixed(0)} ms with the collector up, ${p50(times).toFixed(0)} ms with it down; ${daemonLog.match(/audit export to .*$/m)?.[0]}`);
    // Each curl is a process start and a TLS handshake on a shared machine: within noise of before.
    expect(p50(times)).toBeLessThan(p50(before) * 2 + 100);
    for (const text of [socketText, bodies.join(''), daemonLog]) expect(secretLeaks(text, KEY)).toEqual([]);

    daemon.kill('SIGTERM');
    const code = await new Promise((resolve) => daemon.once('exit', (c) => resolve(c)));
    expect(code).toBe(0);
  }, 60_000);
});
