// LLM token usage on the audit line: recorded-shape stand-ins of the Anthropic and OpenAI APIs
// (HTTPS on loopback, reached as api.anthropic.com, api.openai.com and a gateway named in the
// policy's usage.apis) answer real TLS requests through an Airlock session, streamed and not; the
// lines carry the model and the token counts, `airlock audit --usage` sums them with the cost from
// the policy's price table. Then from the upstream's side: answers built to make the tap crash or
// hold memory (an endless SSE line, deep nesting, huge and negative numbers) pass through
// unchanged while the proxy keeps serving, and their lines carry no made-up counts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type http from 'node:http';
import https from 'node:https';
import { credentialsFactory } from '../../src/credentials/sources.js';
import { createTestPki, rmTmp, runCli, startAirlock, startHttpsUpstream } from '../helpers/servers.js';
import type { AirlockHandle, AuditLine, TestPki, TestUpstream } from '../helpers/servers.js';
import { httpsViaProxy, TunnelAgent } from '../helpers/clients.js';
import { anthropicStandIn, openaiStandIn } from '../helpers/llm-standins.js';
import { secretLeaks } from '../helpers/secret-leaks.js';

const ANTHROPIC_KEY = 'sk-ant-api03-realUsageKey0123456789abcdefghijklmnop';
const OPENAI_KEY = 'sk-proj-realUsageKey0123456789abcdefghijklmnopqrs';
const ANTHROPIC_PLACEHOLDER = 'sk-ant-api03-airlockPlaceholder00000000000000000';
const OPENAI_PLACEHOLDER = 'sk-proj-airlockPlaceholder000000000000000000000';

const A_USAGE = { input: 1200, output: 345, cacheRead: 5000, cacheWrite: 800 };
const O_USAGE = { input: 900, output: 210, cacheRead: 1024, cacheWrite: 0 };

const POLICY = `version: 1
name: llm-usage
allow:
  - host: api.anthropic.com
  - host: api.openai.com
  - host: gateway.llm.test
  - host: hostile.llm.test
  - host: bulk.example.test
  - host: plain.example.test
  - host: echo.llm.test
credentials:
  - name: anthropic
    env: [ANTHROPIC_API_KEY]
    placeholder: ${ANTHROPIC_PLACEHOLDER}
    secret: { env: AIRLOCK_ANTHROPIC_KEY }
    hosts: [api.anthropic.com, echo.llm.test]
    in: [header]
    headers: [x-api-key]
  - name: openai
    env: [OPENAI_API_KEY]
    placeholder: ${OPENAI_PLACEHOLDER}
    secret: { env: AIRLOCK_OPENAI_KEY }
    hosts: [api.openai.com]
    in: [header]
    headers: [authorization]
usage:
  apis:
    - host: gateway.llm.test
      api: anthropic
    - host: echo.llm.test
      api: anthropic
    - host: hostile.llm.test
      api: openai
      paths: [/v1/chat/completions]
  pricing:
    - model: "claude-sonnet-4*"
      input: 3
      output: 15
      cache_read: 0.3
      cache_write: 3.75
    - model: gpt-4o-mini
      input: 0.15
      output: 0.6
      cache_read: 0.075
`;

let pki: TestPki;
let airlock: AirlockHandle;
let anthropic: TestUpstream;
let openai: TestUpstream;
let gateway: TestUpstream;
let hostile: TestUpstream;
let plain: TestUpstream;
let echo: TestUpstream;
const aStandIn = anthropicStandIn(A_USAGE, { key: ANTHROPIC_KEY, gzip: true });
const oStandIn = openaiStandIn(O_USAGE, { key: OPENAI_KEY });
// The gateway is not bound to a credential: its answers reach the client as sent (gzip included).
const gStandIn = anthropicStandIn(A_USAGE, { gzip: true });

/** What the hostile upstream answers next (set per test). */
let hostileAnswer: (res: http.ServerResponse) => void = (res) => res.end();

beforeAll(async () => {
  pki = await createTestPki();
  anthropic = await startHttpsUpstream({ pki, names: ['api.anthropic.com'], handler: aStandIn.handler });
  openai = await startHttpsUpstream({ pki, names: ['api.openai.com'], handler: oStandIn.handler });
  gateway = await startHttpsUpstream({ pki, names: ['gateway.llm.test'], handler: gStandIn.handler });
  hostile = await startHttpsUpstream({
    pki,
    names: ['hostile.llm.test', 'bulk.example.test'],
    handler: (req, res) => {
      req.resume();
      req.on('end', () => hostileAnswer(res));
    },
  });
  plain = await startHttpsUpstream({ pki, names: ['plain.example.test'] });
  // An upstream that puts the key it was sent where the model name goes.
  echo = await startHttpsUpstream({
    pki,
    names: ['echo.llm.test'],
    handler: (req, res) => {
      req.resume();
      req.on('end', () => {
        const key = String(req.headers['x-api-key']);
        res.writeHead(200, { 'Content-Type': 'text/event-stream' });
        res.end(`event: message_start\ndata: {"type":"message_start","message":{"model":"${key}","usage":{"input_tokens":1,"output_tokens":1}}}\n\n`);
      });
    },
  });
  airlock = await startAirlock({
    policy: POLICY,
    resolve: {
      'api.anthropic.com:443': anthropic.port,
      'api.openai.com:443': openai.port,
      'gateway.llm.test:443': gateway.port,
      'hostile.llm.test:443': hostile.port,
      'bulk.example.test:443': hostile.port,
      'plain.example.test:443': plain.port,
      'echo.llm.test:443': echo.port,
    },
    upstreamCa: [pki.caPem],
    credentials: credentialsFactory({ AIRLOCK_ANTHROPIC_KEY: ANTHROPIC_KEY, AIRLOCK_OPENAI_KEY: OPENAI_KEY }),
  });
}, 60_000);

afterAll(async () => {
  await airlock?.close();
  await Promise.all([anthropic?.close(), openai?.close(), gateway?.close(), hostile?.close(), plain?.close(), echo?.close()]);
  rmTmp(pki?.dir);
});

let marker = 0;
/** One POST through the session; returns the answer and the request's audit line. */
async function post(host: string, path: string, body: unknown, headers: Record<string, string> = {}) {
  const tag = `m${++marker}`;
  const res = await httpsViaProxy({
    proxyPort: airlock.port,
    proxyAuthorization: airlock.proxyAuthorization,
    url: `https://${host}${path}?tag=${tag}`,
    ca: [readFileSync(airlock.bundlePath, 'utf8')],
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  const line = await airlock.waitForAudit((l) => l.kind === 'request' && l.host === host && l.path === `${path}?tag=redacted` && l.id !== undefined && !seen.has(l.id));
  seen.add(line.id);
  return { res, line };
}
const seen = new Set<string>();


const anthropicHeaders = { 'x-api-key': ANTHROPIC_PLACEHOLDER, 'anthropic-version': '2023-06-01', 'accept-encoding': 'gzip, deflate, br' };
const openaiHeaders = { authorization: `Bearer ${OPENAI_PLACEHOLDER}` };

describe('usage on the audit line, from recorded-shape stand-ins', () => {
  const lines: AuditLine[] = [];

  it('Anthropic Messages, JSON (gzip, decoded by the scrubber) and SSE (message_start + message_delta)', async () => {
    const model = 'claude-sonnet-4-5-20250929';
    const json = await post('api.anthropic.com', '/v1/messages', { model, max_tokens: 64, messages: [{ role: 'user', content: 'hi' }] }, anthropicHeaders);
    expect(json.res.status).toBe(200);
    expect(JSON.parse(json.res.body).usage.output_tokens).toBe(345);
    const expected = { api: 'anthropic', model, input_tokens: 1200, output_tokens: 345, cache_read_tokens: 5000, cache_write_tokens: 800 };
    // 1200*3 + 345*15 + 5000*0.3 + 800*3.75 = 13275 per million
    expect(json.line.usage).toEqual({ ...expected, cost_usd: 0.013275 });
    const streamed = await post('api.anthropic.com', '/v1/messages', { model, max_tokens: 64, stream: true, messages: [{ role: 'user', content: 'hi' }] }, anthropicHeaders);
    expect(streamed.res.status).toBe(200);
    expect(streamed.res.body).toContain('event: message_delta');
    // message_start said output 1; message_delta's final count wins.
    expect(streamed.line.usage).toEqual({ ...expected, cost_usd: 0.013275 });
    expect(aStandIn.calls.every((c) => c.apiKey === ANTHROPIC_KEY)).toBe(true);
    lines.push(json.line, streamed.line);
  });

  it('OpenAI Chat Completions, JSON and a stream with stream_options.include_usage; cached tokens are taken off the input', async () => {
    const model = 'gpt-4o-mini';
    const json = await post('api.openai.com', '/v1/chat/completions', { model, messages: [{ role: 'user', content: 'hi' }] }, openaiHeaders);
    expect(json.res.status).toBe(200);
    const expected = { api: 'openai', model, input_tokens: 900, output_tokens: 210, cache_read_tokens: 1024 };
    // 900*0.15 + 210*0.6 + 1024*0.075 = 337.8 per million
    expect(json.line.usage).toEqual({ ...expected, cost_usd: 0.000338 });
    const streamed = await post('api.openai.com', '/v1/chat/completions', { model, stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'hi' }] }, openaiHeaders);
    expect(streamed.res.body).toContain('data: [DONE]');
    expect(streamed.line.usage).toEqual({ ...expected, cost_usd: 0.000338 });
    // Without include_usage the stream says only the model: that is what the line says.
    const bare = await post('api.openai.com', '/v1/chat/completions', { model, stream: true, messages: [{ role: 'user', content: 'hi' }] }, openaiHeaders);
    expect(bare.line.usage).toEqual({ api: 'openai', model, unread: 'no usage in the answer' });
    lines.push(json.line, streamed.line, bare.line);
  });

  it('OpenAI Responses, JSON and SSE (response.completed)', async () => {
    const model = 'gpt-5-codex';
    const json = await post('api.openai.com', '/v1/responses', { model, input: 'hi' }, openaiHeaders);
    const expected = { api: 'openai', model, input_tokens: 900, output_tokens: 210, cache_read_tokens: 1024 };
    expect(json.line.usage).toEqual(expected); // no price for this model
    const streamed = await post('api.openai.com', '/v1/responses', { model, input: 'hi', stream: true }, openaiHeaders);
    expect(streamed.res.body).toContain('event: response.completed');
    expect(streamed.line.usage).toEqual(expected);
    lines.push(json.line, streamed.line);
  });

  it('a gateway named in usage.apis is read as its API; its gzip answer, passed through untouched, is marked unread', async () => {
    const model = 'claude-sonnet-4-5';
    const streamed = await post('gateway.llm.test', '/v1/messages', { model, stream: true }, {});
    expect(streamed.line.usage).toMatchObject({ api: 'anthropic', model, input_tokens: 1200, output_tokens: 345 });
    const gz = await post('gateway.llm.test', '/v1/messages', { model }, { 'accept-encoding': 'gzip' });
    expect(gz.res.headers['content-encoding']).toBe('gzip');
    expect(gz.line.usage).toEqual({ api: 'anthropic', unread: 'content-encoding gzip' });
    lines.push(streamed.line, gz.line);
  });

  it('other paths and hosts are not read: count_tokens, a GET, a non-LLM host', async () => {
    const count = await post('api.anthropic.com', '/v1/messages/count_tokens', { model: 'x' }, anthropicHeaders);
    expect(count.line.usage).toBeUndefined();
    const other = await post('plain.example.test', '/v1/messages', { model: 'x', usage: { input_tokens: 5 } });
    expect(other.res.status).toBe(200);
    expect(other.line.usage).toBeUndefined();
  });

  it('airlock audit --usage sums per session, model and day with the policy prices', async () => {
    const r = await runCli(['audit', '--usage', airlock.session.id, '--state-dir', airlock.stateDir, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    const sum = (k: 'input_tokens' | 'output_tokens' | 'cache_read_tokens' | 'cache_write_tokens') => lines.reduce((n, l) => n + (l.usage?.[k] ?? 0), 0);
    expect(s.total).toMatchObject({ calls: lines.length, input: sum('input_tokens'), output: sum('output_tokens'), cacheRead: sum('cache_read_tokens'), cacheWrite: sum('cache_write_tokens'), unread: 2 }); // the gzip answer passed through, and the chat stream without include_usage
    // By hand: 3 anthropic calls priced as claude-sonnet-4*, 3 chat calls (one with no counts) at gpt-4o-mini.
    expect(s.total.input).toBe(3 * 1200 + 2 * 900 + 2 * 900);
    expect(s.total.costUsd).toBeCloseTo(3 * 0.013275 + 2 * 0.000338, 6);
    expect(s.total.unpriced).toBe(2); // the two Responses calls
    expect(s.sessions.map((t: { key: string }) => t.key)).toEqual([airlock.session.id]);
    expect(s.models.find((t: { key: string }) => t.key === 'gpt-5-codex')).toMatchObject({ calls: 2, input: 1800, output: 420, unpriced: 2 });
    expect(s.days).toHaveLength(1);
    expect(s.days[0].key).toBe(new Date().toISOString().slice(0, 10));

    const table = await runCli(['audit', '--usage', '--state-dir', airlock.stateDir]);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/per model:\n(.*\n)*\s+claude-sonnet-4-5-20250929\s+calls 2\s+input 2400\s+output 690\s+cache-read 10000\s+cache-write 1600\s+cost \$0\.026550/);
    expect(table.stdout).toMatch(/total:\n\s+total\s+calls 9 /);
    for (const out of [r.stdout, r.stderr, table.stdout, readFileSync(`${airlock.session.dir}/audit.jsonl`, 'utf8')]) {
      expect(secretLeaks(out, ANTHROPIC_KEY)).toEqual([]);
      expect(secretLeaks(out, OPENAI_KEY)).toEqual([]);
    }
  });
});

/** Sends `chunks` as a 200 answer with `type`, one write each, without buffering them first. */
function answerWith(type: string, chunks: () => Iterable<Buffer | string>): (res: http.ServerResponse) => void {
  return (res) => {
    res.writeHead(200, { 'Content-Type': type });
    const it = chunks()[Symbol.iterator]();
    const next = () => {
      for (;;) {
        const r = it.next();
        if (r.done) {
          res.end();
          return;
        }
        if (!res.write(r.value)) {
          res.once('drain', next);
          return;
        }
      }
    };
    next();
  };
}

describe('from the upstream side: answers built against the tap', () => {
  /** Posts to the hostile upstream with `answer`; checks the client got exactly what was sent. */
  async function hostileCall(answer: (res: http.ServerResponse) => void, expectedBody: () => Iterable<Buffer | string>) {
    hostileAnswer = answer;
    const { res, line } = await post('hostile.llm.test', '/v1/chat/completions', { model: 'x' });
    const want = createHash('sha256');
    let n = 0;
    for (const c of expectedBody()) {
      want.update(c);
      n += Buffer.byteLength(c);
    }
    expect(res.status).toBe(200);
    expect(Buffer.byteLength(res.body)).toBe(n);
    expect(createHash('sha256').update(res.body).digest('hex')).toBe(want.digest('hex'));
    return line;
  }

  it('one 48 MB SSE data line with no end: passed on whole, and the tap holds none of it', async () => {
    const MB = 1024 * 1024;
    const piece = Buffer.alloc(MB, 'a');
    const body = function* () {
      yield 'data: {"model":"gpt-4o-mini","x":"';
      for (let i = 0; i < 48; i++) yield piece;
      yield '"}\n\n';
    };
    hostileAnswer = answerWith('text/event-stream', body);
    const want = createHash('sha256');
    let size = 0;
    for (const c of body()) {
      want.update(c);
      size += Buffer.byteLength(c);
    }
    const memory = () => {
      const m = process.memoryUsage();
      return m.heapUsed + m.arrayBuffers;
    };
    /** The answer from `host`, hashed as it streams (the client keeps nothing), and how far memory rose meanwhile. */
    const fetchBig = async (host: string, tag: string) => {
      const before = memory();
      let peak = before;
      const timer = setInterval(() => (peak = Math.max(peak, memory())), 5);
      const got = await new Promise<{ status: number; bytes: number; hash: string }>((resolve, reject) => {
        const agent = new TunnelAgent({ proxyPort: airlock.port, proxyAuthorization: airlock.proxyAuthorization, ca: [readFileSync(airlock.bundlePath, 'utf8')] });
        const req = https.request({ host, port: 443, method: 'POST', path: `/v1/chat/completions?${tag}=1`, agent }, (res) => {
          const h = createHash('sha256');
          let bytes = 0;
          res.on('data', (c: Buffer) => {
            bytes += c.length;
            h.update(c);
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, hash: h.digest('hex') }));
          res.on('error', reject);
        });
        req.on('error', reject);
        req.end('{}');
      });
      clearInterval(timer);
      return { got, rise: peak - before };
    };
    // The same answer from a host that is not read (the control), then from the usage-read one.
    const control = await fetchBig('bulk.example.test', 'control');
    const tapped = await fetchBig('hostile.llm.test', 'big');
    const digest = want.digest('hex');
    expect(control.got).toEqual({ status: 200, bytes: size, hash: digest });
    expect(tapped.got).toEqual({ status: 200, bytes: size, hash: digest });
    const line = await airlock.waitForAudit((l) => l.path === '/v1/chat/completions?big=redacted');
    // The model before the long string is found; nothing else.
    expect(line.usage).toEqual({ api: 'openai', model: 'gpt-4o-mini', unread: 'no usage in the answer' });
    console.log(`48 MB SSE line: memory rose ${(control.rise / MB).toFixed(1)} MB untapped, ${(tapped.rise / MB).toFixed(1)} MB tapped`);
    // A tap that kept the line until its end would hold 48 MB more (and as much again to join it).
    expect(tapped.rise - control.rise).toBeLessThan(12 * MB);
  }, 60_000);

  it('nesting a million levels deep, in JSON and in an SSE event: skipped', async () => {
    const deep = () => ['{"usage":', '['.repeat(1_000_000), ']'.repeat(1_000_000), ',"model":"m"}'];
    expect((await hostileCall(answerWith('application/json', deep), deep)).usage).toBeUndefined();
    const deepSse = () => ['data: ', '{"a":'.repeat(500_000), '1', '}'.repeat(500_000), '\n\ndata: {"usage":{"prompt_tokens":7}}\n\n'];
    // The deep event is dropped; the next event is read.
    expect((await hostileCall(answerWith('text/event-stream', deepSse), deepSse)).usage).toEqual({ api: 'openai', input_tokens: 7 });
  });

  it('gigantic, negative, fractional and non-numeric counts are not recorded', async () => {
    const body = () => [
      JSON.stringify({ model: 'gpt-4o-mini' }).slice(0, -1),
      ',"usage":{"prompt_tokens":' + '9'.repeat(5000) + ',"completion_tokens":-5,"prompt_tokens_details":{"cached_tokens":1e9}}',
      ',"x":"\\"usage\\":{\\"prompt_tokens\\":3}"}',
    ];
    expect((await hostileCall(answerWith('application/json', body), body)).usage).toEqual({ api: 'openai', model: 'gpt-4o-mini', unread: 'no usage in the answer' });
    const strings = () => [JSON.stringify({ model: 'x\u001b[31m', usage: { prompt_tokens: '12', completion_tokens: 1e400, total_tokens: 3 } })];
    expect((await hostileCall(answerWith('application/json', strings), strings)).usage).toBeUndefined();
    const long = () => [JSON.stringify({ model: 'g'.repeat(100_000), usage: { completion_tokens: 4 } })];
    expect((await hostileCall(answerWith('application/json', long), long)).usage).toEqual({ api: 'openai', output_tokens: 4 });
  });

  it('a session spelling the path another way (repeated or trailing slashes) is still counted', async () => {
    const answer = () => [JSON.stringify({ model: 'gpt-4o-mini', usage: { prompt_tokens: 3, completion_tokens: 4 } })];
    hostileAnswer = answerWith('application/json', answer);
    for (const path of ['/v1/chat/completions/', '/v1//chat///completions', '//v1/chat/completions//']) {
      const { line } = await post('hostile.llm.test', path, {});
      expect(line.usage, path).toMatchObject({ api: 'openai', input_tokens: 3, output_tokens: 4 });
    }
    // Another path is another endpoint: not read.
    expect((await post('hostile.llm.test', '/v1/chat/completion', {})).line.usage).toBeUndefined();
  });

  it('an upstream that echoes the real key as the model name: the line gets the scrubbed text, never the key', async () => {
    const { res, line } = await post('echo.llm.test', '/v1/messages', {}, { 'x-api-key': ANTHROPIC_PLACEHOLDER });
    expect(res.body).not.toContain(ANTHROPIC_KEY);
    // The reader sees what the client gets: the scrubber has already put the placeholder back.
    expect(line.usage).toEqual({ api: 'anthropic', model: ANTHROPIC_PLACEHOLDER, input_tokens: 1, output_tokens: 1 });
    expect(line.detail).toBe('secret_scrubbed');
    expect(secretLeaks(readFileSync(`${airlock.session.dir}/audit.jsonl`, 'utf8'), ANTHROPIC_KEY)).toEqual([]);
  });

  it('garbage, binary and cut-off answers: skipped, and the proxy keeps serving', async () => {
    // Printable noise heavy in JSON's own characters (the client reads the answer as text).
    const noise = Buffer.from(Array.from({ length: 200_000 }, (_, i) => '{["\\:,}]0-9e"'.charCodeAt((i * 7919) % 14)));
    const binary = () => [noise, Buffer.from('"usage":{"prompt_tokens":3}')];
    expect((await hostileCall(answerWith('application/json', binary), binary)).usage).toBeUndefined();
    const crlf = () => ['data: {"usage":\r\n', 'data: {"prompt_tokens":\r', '\n:comment\r\nevent: x\r\n', 'data: 5}}\r\n\r\n'];
    // Two data lines of one event are one document, joined by a newline (as SSE says).
    expect((await hostileCall(answerWith('text/event-stream', crlf), crlf)).usage).toEqual({ api: 'openai', input_tokens: 5 });
    hostileAnswer = (res) => {
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      res.write('data: {"model":"gpt-4o-mini","usage":{"prompt_tokens":11');
      setTimeout(() => res.destroy(), 50);
    };
    const cut = await httpsViaProxy({
      proxyPort: airlock.port,
      proxyAuthorization: airlock.proxyAuthorization,
      url: 'https://hostile.llm.test/v1/chat/completions?cut=1',
      ca: [readFileSync(airlock.bundlePath, 'utf8')],
      method: 'POST',
      body: '{}',
    }).catch((err: Error) => err);
    expect(cut).toBeDefined();
    const line = await airlock.waitForAudit((l) => l.path === '/v1/chat/completions?cut=redacted');
    expect(line.usage).toEqual({ api: 'openai', model: 'gpt-4o-mini', unread: 'no usage in the answer' });
    const after = await post('api.openai.com', '/v1/chat/completions', { model: 'gpt-4o-mini' }, openaiHeaders);
    expect(after.line.usage).toMatchObject({ input_tokens: 900 });
  });
});
