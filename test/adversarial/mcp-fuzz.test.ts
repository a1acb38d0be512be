// A seeded fuzz run of mcp: rules. Three parts:
//   1. the decision alone (no sockets): JSON-RPC bodies that call an allowed or a refused tool in
//      every spelling (batches, notifications, escapes, look-alike keys and methods), mutated
//      byte by byte and token by token. Whatever decideMcpBody lets through, no server reader
//      runs the refused tool: not one that reads like the SDK (JSON.parse, exact keys), not one
//      that matches keys without regard to case (Go's encoding/json), not one that trims and
//      lower-cases the method, not one that keeps the first of two equal keys. It never throws.
//   2. the event-stream reader: mutated streams cut at random places give the same output
//      however they are cut, and no tools/list result it passes shows a tool the rule hides.
//   3. through a real Airlock session to the SDK's server: mutated bodies never get the refused
//      tool run, and the proxy keeps serving.
//
// Reproduce with another seed: AIRLOCK_FUZZ_SEED=1234 npx vitest run test/adversarial/mcp-fuzz.test.ts
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { decideMcpBody, filterToolsResult, type JsonValue } from '../../src/policy/index.js';
import { parseFirstWins } from '../helpers/first-wins-json.js';
import { mcpEventJudge } from '../../src/proxy/mcp/response.js';
import { SseReader, SseTooLarge } from '../../src/proxy/mcp/sse.js';
import { mulberry32 } from './helpers.js';
import { createTestPki, rmTmp, startAirlock, startHttpsUpstream } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import { httpsViaProxy } from '../helpers/clients.js';
import { mcpStandIn, type McpStandIn } from '../helpers/mcp-standin.js';

const SEED = process.env.AIRLOCK_FUZZ_SEED ? Number(process.env.AIRLOCK_FUZZ_SEED) : 0x3c9_f00d;
const CASES = 4000;
const RULE = { tools: ['search_*', 'read_file'] };
const allowedTool = (name: string) => name.startsWith('search_') || name === 'read_file';

const SEEDS = [
  '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs","arguments":{}}}',
  '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_repo","arguments":{}}}',
  '{"jsonrpc":"2.0","id":"a","method":"tools/list","params":{}}',
  '[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file"}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_repo"}}]',
  '{"jsonrpc":"2.0","method":"tools/call","params":{"name":"delete_repo"}}',
  '{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"delete_repo"}}',
  '{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"tools/list","params":{"name":"delete_repo"}}',
  '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_repo","name":"read_file"}}',
  '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"NAME":"delete_repo","name":"read_file"}}',
  '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","_meta":{"name":"delete_repo"}}}',
  '{"jsonrpc":"2.0","id":1,"result":{"content":[]}}',
  '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}',
];
const TOKENS = ['"method"', '"Method"', '"METHOD"', '"params"', '"name"', '"Name"', '"nam\\u0065"', '"tools/call"', '"Tools/Call"', '"tools/call "', '"delete_repo"', '"read_file"', '"search_x"', ',', ':', '{', '}', '[', ']', '"', '\\', 'null', '1', '"\\u0000"', '"_meta"', '\ufeff', ' '];

function mutate(rand: () => number, body: string): string {
  let s = body;
  const steps = Math.floor(rand() * 4);
  for (let i = 0; i < steps; i++) {
    const at = Math.floor(rand() * (s.length + 1));
    const pick = rand();
    if (pick < 0.4) s = s.slice(0, at) + TOKENS[Math.floor(rand() * TOKENS.length)] + s.slice(at);
    else if (pick < 0.6) s = s.slice(0, at) + s.slice(at + 1 + Math.floor(rand() * 6));
    else if (pick < 0.75) s = s.slice(0, at) + String.fromCharCode(Math.floor(rand() * 128)) + s.slice(at + 1);
    else if (pick < 0.9) {
      const from = Math.floor(rand() * s.length);
      s = s.slice(0, at) + s.slice(from, from + Math.floor(rand() * 40)) + s.slice(at);
    } else s = `[${s},${SEEDS[Math.floor(rand() * SEEDS.length)]}]`;
  }
  return s;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The tools/call names servers with different readers would run for a body. */
function toolsRun(body: string): string[] {
  const out: string[] = [];
  let exact: unknown;
  try {
    exact = JSON.parse(body);
  } catch {
    return out;
  }
  // Keys matched without regard to case, the last one winning (as Go's decoder fills a struct).
  const lower = JSON.parse(body, function (this: unknown, _k, v: unknown) {
    if (!isObj(v)) return v;
    const o: Obj = {};
    for (const [k, val] of Object.entries(v)) o[k.toLowerCase()] = val;
    return o;
  }) as unknown;
  // The first of two equal keys winning, as some parsers read them.
  let first: unknown = null;
  try {
    first = parseFirstWins(body);
  } catch {
    first = null;
  }
  for (const [value, lenient] of [[exact, false], [lower, true], [first, false]] as const) {
    for (const m of Array.isArray(value) ? value : [value]) {
      if (!isObj(m)) continue;
      let method = m.method;
      if (typeof method !== 'string') continue;
      if (lenient) method = method.trim().toLowerCase();
      if (method !== 'tools/call') continue;
      const params = m.params;
      if (isObj(params) && typeof params.name === 'string') out.push(params.name);
    }
  }
  return out;
}

describe('MCP decision fuzz', () => {
  it(`${CASES} mutated bodies: never throws, and nothing it allows runs a refused tool for any reader`, () => {
    const rand = mulberry32(SEED);
    let allowed = 0;
    let slowest = 0;
    for (let i = 0; i < CASES; i++) {
      const body = mutate(rand, SEEDS[Math.floor(rand() * SEEDS.length)]!);
      const started = performance.now();
      const verdict = decideMcpBody(body, RULE, 'allow[0] mcp.example.com', 'mcp.example.com');
      slowest = Math.max(slowest, performance.now() - started);
      if (!verdict.ok) continue;
      allowed++;
      for (const tool of toolsRun(body)) expect(allowedTool(tool), `case ${i} let ${JSON.stringify(tool)} through: ${body}`).toBe(true);
    }
    // The seeds that are fine stay fine often enough for the check to mean something.
    expect(allowed).toBeGreaterThan(CASES / 10);
    expect(slowest).toBeLessThan(200);
  });
});

const STREAM_SEEDS = [
  'data: {"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read_file"},{"name":"delete_repo"}]}}\n\n',
  'event: message\nid: 7\ndata: {"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"delete_repo"}],"nextCursor":"c"}}\n\n',
  ': ping\n\n',
  'event: endpoint\ndata: /messages?sessionId=1\n\n',
  'data: {"jsonrpc":"2.0","method":"notifications/tools/list_changed"}\n\n',
  'data: [{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"search_a"},{"name":"delete_repo"}]}}]\n\n',
  'data: {"jsonrpc":"2.0",\ndata: "id":4,"result":{"tools":[{"name":"delete_repo"}]}}\n\n',
];
const STREAM_TOKENS = ['\n', '\r\n', '\r', 'data: ', 'data:', 'event: ', ':', '"tools"', '"result"', '{', '}', ',', 'delete_repo'];

/** The proxy's own event judge, with the rule's filter. */
function newReader(): SseReader {
  const filtered = (v: JsonValue) => {
    const f = filterToolsResult(v, RULE.tools);
    return f ? JSON.stringify(f.message) : null;
  };
  return new SseReader(mcpEventJudge(filtered, () => {}), 64 * 1024);
}

describe('event-stream reader fuzz', () => {
  it('mutated streams, cut anywhere: the same output for every cut, and no hidden tool in a tools/list result', () => {
    const rand = mulberry32(SEED ^ 0x5555);
    for (let i = 0; i < 1500; i++) {
      let stream = '';
      const events = 1 + Math.floor(rand() * 5);
      for (let e = 0; e < events; e++) stream += STREAM_SEEDS[Math.floor(rand() * STREAM_SEEDS.length)];
      for (let m = Math.floor(rand() * 3); m > 0; m--) {
        const at = Math.floor(rand() * stream.length);
        stream = rand() < 0.5 ? stream.slice(0, at) + STREAM_TOKENS[Math.floor(rand() * STREAM_TOKENS.length)] + stream.slice(at) : stream.slice(0, at) + stream.slice(at + 1);
      }
      const bytes = Buffer.from(stream);
      const outputs: string[] = [];
      for (let cut = 0; cut < 3; cut++) {
        const reader = newReader();
        let out = '';
        let at = 0;
        try {
          while (at < bytes.length) {
            const n = cut === 0 ? bytes.length : 1 + Math.floor(rand() * (cut === 1 ? 3 : 40));
            out += reader.push(bytes.subarray(at, at + n));
            at += n;
          }
          out += reader.end();
        } catch (err) {
          expect(err).toBeInstanceOf(SseTooLarge);
          out = 'too large';
        }
        outputs.push(out);
      }
      expect(outputs[1], `case ${i}: ${JSON.stringify(stream)}`).toBe(outputs[0]);
      expect(outputs[2], `case ${i}: ${JSON.stringify(stream)}`).toBe(outputs[0]);
      // Every event that reaches the client and reads as a tools/list result shows listed tools only.
      for (const block of outputs[0]!.split('\n\n')) {
        const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, '')).join('\n');
        let value: unknown;
        try {
          value = JSON.parse(data);
        } catch {
          continue;
        }
        for (const m of Array.isArray(value) ? value : [value]) {
          if (!isObj(m) || m.method !== undefined || !isObj(m.result) || !Array.isArray(m.result.tools)) continue;
          for (const t of m.result.tools) expect(isObj(t) && allowedTool(String(t.name)), `case ${i}: ${block}`).toBe(true);
        }
      }
    }
  });
});

describe('MCP through Airlock, fuzzed', () => {
  const SECRET = 'mcp_FuzzRealToken_0123456789abcdefXYZ';
  let pki: TestPki;
  let upstream: TestUpstream;
  let standIn: McpStandIn;
  let airlock: AirlockHandle;

  beforeAll(async () => {
    pki = await createTestPki();
    standIn = mcpStandIn(SECRET);
    upstream = await startHttpsUpstream({ pki, names: ['mcp.example.com'], handler: standIn.handler });
    airlock = await startAirlock({
      policy: `version: 1\nname: mcp-fuzz\nallow:\n  - host: mcp.example.com\n    mcp:\n      tools: ["search_*", "read_file"]\n`,
      resolve: { 'mcp.example.com:443': upstream.port },
      upstreamCa: [pki.caPem],
    });
  }, 60_000);

  afterAll(async () => {
    await airlock?.close();
    await standIn?.close();
    await upstream?.close();
    rmTmp(pki?.dir);
  });

  it('200 mutated bodies to the SDK server: the refused tool never runs, the proxy keeps serving', async () => {
    const rand = mulberry32(SEED ^ 0xabcd);
    const ca = readFileSync(airlock.bundlePath, 'utf8');
    const statuses = new Map<number, number>();
    for (let i = 0; i < 200; i++) {
      const body = mutate(rand, SEEDS[Math.floor(rand() * SEEDS.length)]!);
      const r = await httpsViaProxy({
        proxyPort: airlock.port,
        proxyAuthorization: airlock.proxyAuthorization,
        url: 'https://mcp.example.com/mcp-json',
        ca,
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${SECRET}` },
        body,
      });
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
      expect(standIn.ran.filter((t) => !allowedTool(t)), `case ${i}: ${body}`).toEqual([]);
    }
    // Some got through to the server, some were refused: the run exercised both paths.
    expect(standIn.bodies.length).toBeGreaterThan(10);
    expect((statuses.get(400) ?? 0) + (statuses.get(403) ?? 0)).toBeGreaterThan(10);
    const control = await httpsViaProxy({
      proxyPort: airlock.port,
      proxyAuthorization: airlock.proxyAuthorization,
      url: 'https://mcp.example.com/mcp-json',
      ca,
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${SECRET}` },
      body: SEEDS[0]!,
    });
    expect(control.status).toBe(200);
    expect(control.body).toContain('search_docs ran');
  }, 120_000);
});
