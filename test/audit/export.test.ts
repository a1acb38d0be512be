// Audit export: JSON lines to a unix socket and to stdout, OpenTelemetry log records over
// OTLP/HTTP to a collector stand-in (a real HTTP server on loopback reading the OTLP JSON), all
// from real requests through a session (LLM usage included). Then the collector down, silent or a
// socket reader that stops reading: the proxy keeps serving at its pace, memory stays bounded,
// lost lines are counted and reported, and nothing exported holds a secret.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { AuditExports, parseExportTarget } from '../../src/audit/export.js';
import type { ExportTarget } from '../../src/audit/export.js';
import { AuditLog } from '../../src/audit/log.js';
import type { AuditEntry } from '../../src/audit/entry.js';
import { credentialsFactory } from '../../src/credentials/sources.js';
import { createTestPki, freePort, rmTmp, runCli, sleep, startAirlock, startHttpsUpstream, tmpDir, waitFor } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import { httpsViaProxy } from '../helpers/clients.js';
import { anthropicStandIn } from '../helpers/llm-standins.js';
import { secretLeaks } from '../helpers/secret-leaks.js';

const KEY = 'sk-ant-api03-exportRealKey0123456789abcdefghijklmnopq';
const PLACEHOLDER = 'sk-ant-api03-exportPlaceholder000000000000000000';
const POLICY = `version: 1
name: export-test
allow:
  - host: api.anthropic.com
credentials:
  - name: anthropic
    env: [ANTHROPIC_API_KEY]
    placeholder: ${PLACEHOLDER}
    secret: { env: AIRLOCK_ANTHROPIC_KEY }
    hosts: [api.anthropic.com]
    in: [header]
    headers: [x-api-key]
usage:
  pricing:
    - { model: "claude-*", input: 3, output: 15 } # cache read and write at the input price
`;

let pki: TestPki;
let api: TestUpstream;
let airlock: AirlockHandle;
let dir: string;
const standIn = anthropicStandIn({ input: 10, output: 20, cacheRead: 30, cacheWrite: 40 }, { key: KEY });

beforeAll(async () => {
  pki = await createTestPki();
  dir = tmpDir('airlock-export-');
  api = await startHttpsUpstream({ pki, names: ['api.anthropic.com'], handler: standIn.handler });
  airlock = await startAirlock({
    policy: POLICY,
    resolve: { 'api.anthropic.com:443': api.port },
    upstreamCa: [pki.caPem],
    credentials: credentialsFactory({ AIRLOCK_ANTHROPIC_KEY: KEY }),
  });
}, 60_000);

afterAll(async () => {
  await airlock?.close();
  await api?.close();
  rmTmp(dir, pki?.dir);
});

let n = 0;
/** One Messages API call through the session (`stream` or not); resolves with the status. */
async function call(stream = false, handle = airlock): Promise<number> {
  const r = await httpsViaProxy({
    proxyPort: handle.port,
    proxyAuthorization: handle.proxyAuthorization,
    url: `https://api.anthropic.com/v1/messages?n=${++n}&key=${KEY}`,
    ca: [readFileSync(handle.bundlePath, 'utf8')],
    method: 'POST',
    headers: { 'x-api-key': PLACEHOLDER, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'claude-sonnet-4-5', stream, max_tokens: 10 }),
  });
  return r.status;
}

/** A unix socket server keeping what it reads; `paused` ones do not read until resumed. */
async function socketReader(path: string, paused = false) {
  let text = '';
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => {
    sockets.push(s);
    if (paused) s.pause();
    s.setEncoding('utf8').on('data', (c: string) => (text += c));
  });
  await new Promise<void>((r) => server.listen(path, r));
  return {
    get text() {
      return text;
    },
    resume: () => sockets.forEach((s) => s.resume()),
    close: () => new Promise<void>((r) => {
      sockets.forEach((s) => s.destroy());
      server.close(() => r());
    }),
  };
}

/** An OTLP/HTTP collector stand-in: POST /v1/logs, OTLP JSON; `mode` silent never answers. */
async function collector(mode: 'ok' | 'silent' = 'ok') {
  const bodies: unknown[] = [];
  const seen: { path: string; type: string | undefined }[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({ path: req.url ?? '', type: req.headers['content-type'] });
      if (mode === 'silent') return;
      bodies.push(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      res.writeHead(200, { 'Content-Type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    bodies,
    seen,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}

type OtlpValue = { stringValue?: string; intValue?: number | string; doubleValue?: number; boolValue?: boolean; arrayValue?: { values: OtlpValue[] } };
function plain(v: OtlpValue): unknown {
  if (v.arrayValue) return (v.arrayValue.values ?? []).map(plain);
  if (v.intValue !== undefined) return Number(v.intValue);
  return v.stringValue ?? v.doubleValue ?? v.boolValue;
}
/** The log records of OTLP JSON bodies, attributes flattened. */
function records(bodies: unknown[]) {
  type Body = { resourceLogs: { resource: { attributes: { key: string; value: OtlpValue }[] }; scopeLogs: { scope: { name: string }; logRecords: { attributes: { key: string; value: OtlpValue }[]; body: OtlpValue; severityText: string; eventName?: string; timeUnixNano: string | number }[] }[] }[] };
  return (bodies as Body[]).flatMap((b) =>
    b.resourceLogs.flatMap((rl) =>
      rl.scopeLogs.flatMap((sl) =>
        sl.logRecords.map((r) => ({
          resource: Object.fromEntries(rl.resource.attributes.map((a) => [a.key, plain(a.value)])),
          scope: sl.scope.name,
          body: plain(r.body),
          severity: r.severityText,
          event: r.eventName,
          time: Number(r.timeUnixNano),
          attributes: Object.fromEntries(r.attributes.map((a) => [a.key, plain(a.value)])) as Record<string, unknown>,
        })),
      ),
    ),
  );
}

describe('audit export targets', () => {
  it('parses stdout, unix:PATH and otlp:URL and refuses anything else with what is accepted', () => {
    expect(parseExportTarget('stdout')).toEqual({ kind: 'stdout' });
    expect(parseExportTarget('unix:/run/x.sock')).toEqual({ kind: 'unix', path: '/run/x.sock' });
    expect(parseExportTarget('otlp:http://127.0.0.1:4318')).toEqual({ kind: 'otlp', url: 'http://127.0.0.1:4318/v1/logs' });
    expect(parseExportTarget('otlp:https://c.example/otlp/v1/logs')).toEqual({ kind: 'otlp', url: 'https://c.example/otlp/v1/logs' });
    expect(() => parseExportTarget('unix:rel.sock')).toThrow(/absolute path/);
    expect(() => parseExportTarget('otlp:http://u:p@c.example')).toThrow(/no credentials in the URL/);
    expect(() => parseExportTarget('syslog')).toThrow(/use stdout, unix:\/path\/to.sock or otlp:http:\/\/host:4318/);
  });
});

describe('JSON lines and OTLP from real requests', () => {
  it('a unix socket reader and an OTLP collector get every line, usage included, and no secret', async () => {
    const sock = await socketReader(join(dir, 'reader.sock'));
    const otel = await collector();
    const reports: string[] = [];
    const targets: ExportTarget[] = [{ kind: 'unix', path: join(dir, 'reader.sock') }, { kind: 'otlp', url: `http://127.0.0.1:${otel.port}/v1/logs` }];
    const exports = new AuditExports(targets, (t, d) => reports.push(`${t} ${d}`));
    const stop = exports.attach(airlock.session.audit);
    await sleep(100); // the socket connects
    expect(await call(false)).toBe(200);
    expect(await call(true)).toBe(200);
    await waitFor(() => sock.text.split('\n').filter(Boolean).length >= 4, 5_000, 'four JSON lines');
    await exports.close();
    stop();

    const all = sock.text.trim().split('\n').map((l) => JSON.parse(l) as AuditEntry & { time: string });
    // The end lines of audit.jsonl without their chain fields, time first: each call's tunnel and its request.
    const file = (await airlock.auditLines()).map((l) => {
      const { seq: _seq, prev: _prev, mac: _mac, ...rest } = l as Record<string, unknown>;
      return rest;
    });
    for (const l of all) expect(file).toContainEqual(l);
    expect(all.map((l) => l.kind).sort()).toEqual(['request', 'request', 'tunnel', 'tunnel']);
    const lines = all.filter((l) => l.kind === 'request');
    expect(sock.text.split('\n')[0]).toMatch(/^\{"time":"\d{4}-\d\d-\d\dT[^"]+Z","session":"s-/);
    expect(lines.map((l) => l.usage)).toEqual([
      { api: 'anthropic', model: 'claude-sonnet-4-5', input_tokens: 10, output_tokens: 20, cache_read_tokens: 30, cache_write_tokens: 40, cost_usd: 0.00054 },
      { api: 'anthropic', model: 'claude-sonnet-4-5', input_tokens: 10, output_tokens: 20, cache_read_tokens: 30, cache_write_tokens: 40, cost_usd: 0.00054 },
    ]);

    expect(otel.seen.every((s) => s.path === '/v1/logs' && s.type === 'application/json')).toBe(true);
    const recs = records(otel.bodies);
    expect(recs).toHaveLength(4);
    const r = recs.find((x) => x.attributes['airlock.request.id'] === lines[0]!.id)!;
    expect(r.resource['service.name']).toBe('airlock');
    expect(r.scope).toBe('airlock.audit');
    expect(r.event).toBe('airlock.audit');
    expect(r.severity).toBe('INFO');
    expect(r.body).toMatch(/^allow 200 POST https:\/\/api\.anthropic\.com:443\/v1\/messages\?n=redacted&key=redacted$/);
    expect(Math.abs(r.time / 1e6 - Date.parse(lines[0]!.time))).toBeLessThan(1);
    expect(r.attributes).toMatchObject({
      'airlock.session': airlock.session.id,
      'airlock.request.id': lines[0]!.id,
      'http.request.method': 'POST',
      'server.address': 'api.anthropic.com',
      'server.port': 443,
      'http.response.status_code': 200,
      'airlock.action': 'allow',
      'airlock.credentials': ['anthropic'],
      'gen_ai.provider.name': 'anthropic',
      'gen_ai.response.model': 'claude-sonnet-4-5',
      'gen_ai.usage.input_tokens': 10,
      'gen_ai.usage.output_tokens': 20,
      'gen_ai.usage.cache_read.input_tokens': 30,
      'gen_ai.usage.cache_creation.input_tokens': 40,
      'airlock.usage.cost_usd': 0.00054,
    });
    expect(reports).toEqual([]);
    // The real key was in each request's query too: redacted before any line existed.
    expect(secretLeaks(sock.text, KEY)).toEqual([]);
    expect(secretLeaks(JSON.stringify(otel.bodies), KEY)).toEqual([]);
    await sock.close();
    await otel.close();
  });

  it('airlock exec --audit-export stdout and unix: the CLI wires them; the lines carry no secret', async () => {
    const path = join(dir, 'exec.sock');
    const sock = await socketReader(path);
    const otel = await collector();
    const policy = join(dir, 'exec-policy.yaml');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(policy, POLICY);
    const stateDir = tmpDir('airlock-export-exec-');
    const script = `curl -s -o /dev/null -w '%{http_code}\\n' -X POST -H "x-api-key: $ANTHROPIC_API_KEY" -H 'content-type: application/json' -d '{"model":"claude-haiku-4-5"}' https://api.anthropic.com/v1/messages`;
    const r = await runCli(
      ['exec', '--policy', policy, '--state-dir', stateDir, '--resolve', `api.anthropic.com:443:127.0.0.1:${api.port}`, '--upstream-ca', pki.caFile, '--audit-export', 'stdout', '--audit-export', `unix:${path}`, '--audit-export', `otlp:http://127.0.0.1:${otel.port}`, '--', 'sh', '-c', script],
      { env: { ...process.env, AIRLOCK_ANTHROPIC_KEY: KEY }, timeoutMs: 60_000 },
    );
    expect(r.code, r.stderr).toBe(0);
    const out = r.stdout.split('\n').filter(Boolean);
    expect(out).toContain('200');
    const exported = out.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as AuditEntry).filter((l) => l.kind === 'request');
    expect(exported).toHaveLength(1);
    expect(exported[0]).toMatchObject({ host: 'api.anthropic.com', status: 200, credentials: ['anthropic'], usage: { model: 'claude-haiku-4-5', input_tokens: 10, output_tokens: 20 } });
    await waitFor(() => sock.text.includes('claude-haiku-4-5'), 5_000, 'the socket line');
    expect(sock.text.trim().split('\n').map((l) => JSON.parse(l))).toEqual(out.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)));
    // The OTLP batch went out before exec exited (the runtime's close flushes it).
    const recs = records(otel.bodies);
    expect(recs.map((x) => x.attributes['airlock.kind']).sort()).toEqual(['request', 'tunnel']);
    expect(recs.find((x) => x.attributes['airlock.kind'] === 'request')!.attributes).toMatchObject({ 'gen_ai.response.model': 'claude-haiku-4-5', 'gen_ai.usage.input_tokens': 10 });
    for (const text of [r.stdout, r.stderr, sock.text, JSON.stringify(otel.bodies)]) expect(secretLeaks(text, KEY)).toEqual([]);
    await otel.close();
    const bad = await runCli(['exec', '--policy', policy, '--state-dir', stateDir, '--audit-export', 'syslog', '--', 'true']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/--audit-export "syslog": use stdout, unix:\/path\/to.sock or otlp:http:\/\/host:4318/);
    await sock.close();
    rmTmp(stateDir);
  }, 90_000);
});

describe('a collector or reader that is down or slow', () => {
  /** p50 of `count` sequential calls, in ms. */
  async function p50(count: number): Promise<number> {
    const times: number[] = [];
    for (let i = 0; i < count; i++) {
      const t = performance.now();
      expect(await call(i % 2 === 0)).toBe(200);
      times.push(performance.now() - t);
    }
    return times.sort((a, b) => a - b)[Math.floor(count / 2)]!;
  }

  it('OTLP collector down (refused) and silent (never answers): requests go on at their pace, the losses are reported', async () => {
    const baseline = await p50(20);
    const downPort = await freePort();
    const silent = await collector('silent');
    const reports: Array<[string, number, number]> = [];
    const exports = new AuditExports(
      [{ kind: 'otlp', url: `http://127.0.0.1:${downPort}/v1/logs` }, { kind: 'otlp', url: `http://127.0.0.1:${silent.port}/v1/logs` }],
      (t, d, total) => reports.push([t, d, total]),
    );
    await sleep(200); // the baseline's last tunnel line is written
    let lines = 0;
    const count = airlock.session.audit.subscribe(() => lines++);
    const stop = exports.attach(airlock.session.audit);
    const during = await p50(40);
    await sleep(200);
    stop();
    count();
    expect(lines).toBe(80); // each call: its tunnel and its request
    // Not slower than without the export, beyond noise.
    expect(during).toBeLessThan(baseline * 2 + 20);
    // The refused collector's batch fails at once; the silent one's when the exporter gives up (5 s).
    await waitFor(() => reports.some(([t]) => t.includes(String(downPort))), 15_000, 'the refused collector reported');
    await waitFor(() => reports.some(([t]) => t.includes(String(silent.port))), 15_000, 'the silent collector reported');
    expect(silent.seen.length).toBeGreaterThan(0);
    await exports.close();
    const dropped = exports.dropped();
    expect(dropped[`otlp:http://127.0.0.1:${downPort}/v1/logs`]).toBe(lines);
    expect(dropped[`otlp:http://127.0.0.1:${silent.port}/v1/logs`]).toBe(lines);
    // Every loss was reported (the last ones at close).
    expect(reports.filter(([t]) => t.includes(String(downPort))).reduce((a, [, d]) => a + d, 0)).toBe(lines);
    await silent.close();
  }, 60_000);

  it('a socket that is not there yet: lines wait in the queue and go out once it listens', async () => {
    const path = join(dir, 'late.sock');
    const exports = new AuditExports([{ kind: 'unix', path }], () => {});
    const log = new AuditLog(join(dir, 'late-audit.jsonl'), { key: Buffer.alloc(32, 7), session: 's-000000000000' });
    await log.ready();
    exports.attach(log);
    const entry: AuditEntry = {
      session: 's-000000000000', id: 'early1', kind: 'request', method: 'GET', scheme: 'https', host: 'h.example', port: 443,
      path: '/', status: 200, action: 'allow', rule: null, reason: 'allowed', credentials: [], bytes_up: 0, bytes_down: 0, duration_ms: 1,
    };
    log.record(entry);
    log.record({ ...entry, id: 'early2' });
    await sleep(300);
    const sock = await socketReader(path);
    await waitFor(() => sock.text.includes('early2'), 5_000, 'the queued lines');
    expect(sock.text.trim().split('\n').map((l) => JSON.parse(l).id)).toEqual(['early1', 'early2']);
    expect(exports.dropped()[`unix:${path}`]).toBe(0);
    await exports.close();
    await log.close();
    await sock.close();
  });

  it('a socket reader that stops reading: the queue stays bounded, drops are counted, and the stream says so when it reads again', async () => {
    const path = join(dir, 'stuck.sock');
    const sock = await socketReader(path, true);
    const reports: number[] = [];
    const exports = new AuditExports([{ kind: 'unix', path }], (_t, d) => reports.push(d));
    const log = new AuditLog(join(dir, 'stuck-audit.jsonl'), { key: Buffer.alloc(32, 7), session: 's-000000000000' });
    await log.ready();
    exports.attach(log);
    await sleep(100);
    const entry: AuditEntry = {
      session: 's-000000000000', id: 'x', kind: 'request', method: 'GET', scheme: 'https', host: 'h.example', port: 443,
      path: '/' + 'p'.repeat(900), status: 200, action: 'allow', rule: 'allow[0] h.example', reason: 'allowed', credentials: [], bytes_up: 0, bytes_down: 0, duration_ms: 1,
    };
    const before = process.memoryUsage().heapUsed;
    // About 20 MB of lines against a 4 MiB queue and a socket buffer.
    for (let i = 0; i < 20_000; i++) {
      log.record({ ...entry, id: `x${i}` });
      if (i % 1000 === 0) await sleep(1);
    }
    const grown = process.memoryUsage().heapUsed - before;
    const lost = exports.dropped()[`unix:${path}`]!;
    expect(lost).toBeGreaterThan(10_000);
    expect(grown).toBeLessThan(40 * 1024 * 1024);
    sock.resume();
    // What was queued goes out first; a line recorded once there is room again follows a note of the gap.
    let k = 0;
    await waitFor(async () => {
      log.record({ ...entry, id: `after${k++}` });
      await sleep(200);
      return sock.text.includes('"id":"after');
    }, 30_000, 'a line after the gap');
    const lines = sock.text.trim().split('\n');
    const first = lines.findIndex((l) => l.includes('"id":"after'));
    const note = JSON.parse(lines[first - 1]!);
    const total = exports.dropped()[`unix:${path}`]!;
    expect(note).toMatchObject({ export: 'dropped', dropped: total, dropped_total: total });
    expect(total).toBeGreaterThanOrEqual(lost);
    expect(lines.filter((l) => l.includes('"export"'))).toHaveLength(1);
    await exports.close();
    // Every loss was reported: the first at once, the rest at most every few seconds and at close.
    expect(reports[0]).toBe(1);
    expect(reports.reduce((a, b) => a + b, 0)).toBe(exports.dropped()[`unix:${path}`]);
    await log.close();
    await sock.close();
  }, 60_000);
});
