// mcp: rules from the attacker's side: hand-made JSON-RPC bodies that try to get an unlisted
// tool called, or the hidden tools seen, past Airlock. Each is sent through a real Airlock
// session over TLS to the official SDK's server (which records every body that reaches it), or
// to a scripted server for what a server sends back. Nothing refused may reach the server; every
// refusal says why in JSON-RPC; the proxy keeps serving.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import type http from 'node:http';
import type tls from 'node:tls';
import { createTestPki, rmTmp, startAirlock, startHttpsUpstream, waitFor } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import { httpsViaProxy, openTunnelTls } from '../helpers/clients.js';
import { credentialsFactory } from '../../src/credentials/sources.js';
import { mcpStandIn, type McpStandIn } from '../helpers/mcp-standin.js';

const SECRET = 'mcp_RedTeamRealToken_0123456789abcdefXYZ';
const PLACEHOLDER = 'mcp_redPlaceholder_000000000000000000';

const POLICY = `version: 1
name: mcp-red
allow:
  - host: mcp.example.com
    mcp:
      tools: ["search_*", "read_file"]
  - host: scripted.example.com
    mcp:
      tools: ["read_file"]
credentials:
  - name: mcp
    env: [MCP_TOKEN]
    placeholder: ${PLACEHOLDER}
    secret: { env: AIRLOCK_MCP_TOKEN }
    hosts: [mcp.example.com]
    in: [header]
`;

let pki: TestPki;
let upstream: TestUpstream;
let scripted: TestUpstream;
let standIn: McpStandIn;
let airlock: AirlockHandle;
let ca: string;
/** What the scripted server does for a path. */
const scripts = new Map<string, (req: http.IncomingMessage, res: http.ServerResponse) => void>();
let upgrades = 0;

beforeAll(async () => {
  pki = await createTestPki();
  standIn = mcpStandIn(SECRET);
  upstream = await startHttpsUpstream({ pki, names: ['mcp.example.com'], handler: standIn.handler });
  scripted = await startHttpsUpstream({
    pki,
    names: ['scripted.example.com'],
    handler: (req, res) => {
      const script = scripts.get(req.url ?? '');
      if (script) script(req, res);
      else res.writeHead(404).end();
    },
    onUpgrade: (_req, socket) => {
      upgrades++;
      socket.end('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    },
  });
  airlock = await startAirlock({
    policy: POLICY,
    resolve: { 'mcp.example.com:443': upstream.port, 'scripted.example.com:443': scripted.port },
    upstreamCa: [pki.caPem],
    credentials: credentialsFactory({ AIRLOCK_MCP_TOKEN: SECRET }),
  });
  ca = readFileSync(airlock.bundlePath, 'utf8');
}, 60_000);

afterAll(async () => {
  await airlock?.close();
  await standIn?.close();
  await upstream?.close();
  await scripted?.close();
  rmTmp(pki?.dir);
});

const STREAMABLE = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${PLACEHOLDER}` };

function post(body: string | Buffer, headers: Record<string, string> = STREAMABLE, path = '/mcp-json') {
  return httpsViaProxy({ proxyPort: airlock.port, proxyAuthorization: airlock.proxyAuthorization, url: `https://mcp.example.com${path}`, ca, method: 'POST', headers, body });
}

const call = (name: unknown, id: unknown = 1, extra: Record<string, unknown> = {}) => JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: {} }, ...extra });

/** Sends a body that must not reach the server, and returns the answer. */
async function refused(body: string | Buffer, headers?: Record<string, string>) {
  const before = standIn.bodies.length;
  const ran = standIn.ran.length;
  const r = await post(body, headers);
  // Give anything forwarded time to land before checking it did not.
  await new Promise((resolve) => setTimeout(resolve, 50));
  expect(standIn.bodies.length, `reached the server: ${standIn.bodies.at(-1)}`).toBe(before);
  expect(standIn.ran.length).toBe(ran);
  expect(r.headers['x-airlock-decision']).toMatch(/^deny; reason=/);
  return r;
}

describe('tools/call tricks', () => {
  it('a listed tool goes through (the control)', async () => {
    const r = await post(call('search_docs'));
    expect(r.status).toBe(200);
    expect(r.body).toContain('search_docs ran');
  });

  it.each([
    ['Tools/Call'],
    ['TOOLS/CALL'],
    ['tools/call '],
    [' tools/call'],
    ['tools/call\u200b'],
    ['tools/call\u0000'],
    ['tools\u2215call'],
    ['ｔｏｏｌｓ/call'],
  ])('method %j is refused as unreadable, not passed as "some other method"', async (method) => {
    const r = await refused(JSON.stringify({ jsonrpc: '2.0', id: 7, method, params: { name: 'delete_repo' } }));
    expect(r.status).toBe(400);
    const answer = JSON.parse(r.body);
    expect(answer).toMatchObject({ jsonrpc: '2.0', id: 7, error: { code: -32600 } });
    expect(answer.error.message).toMatch(/is not a plain MCP method name/);
  });

  it('an escaped spelling of tools/call is tools/call, and is decided as one', async () => {
    const r = await refused('{"jsonrpc":"2.0","id":8,"method":"tools\\/c\\u0061ll","params":{"name":"delete_repo"}}');
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ id: 8, error: { code: -32001 } });
  });

  it('a batch mixing a listed and an unlisted call is refused whole, each request answered', async () => {
    const batch = `[${call('search_docs', 1)},${call('delete_repo', 2)},{"jsonrpc":"2.0","method":"notifications/progress","params":{}}]`;
    const r = await refused(batch);
    expect(r.status).toBe(200);
    const answers = JSON.parse(r.body);
    expect(answers).toHaveLength(2);
    expect(answers[0]).toMatchObject({ id: 1, error: { code: -32001, message: expect.stringMatching(/not sent: another message of this batch was refused/) } });
    expect(answers[1]).toMatchObject({ id: 2, error: { code: -32001, message: expect.stringMatching(/MCP tool "delete_repo" .* is not allowed/) } });
  });

  it.each([
    ['method twice', '{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"delete_repo"}}'],
    ['name twice', '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs","name":"delete_repo"}}'],
    ['name twice, once escaped', '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs","\\u006eame":"delete_repo"}}'],
    ['name and NAME', '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs","NAME":"delete_repo"}}'],
    ['params twice', '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs"},"params":{"name":"delete_repo"}}'],
    ['Method alone (Go reads keys without case)', '{"jsonrpc":"2.0","id":1,"Method":"tools/call","params":{"name":"delete_repo"}}'],
    ['Name alone', '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"Name":"delete_repo"}}'],
    ['params and paramſ (a long s, which Go and NFKC read as s)', '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs"},"param\u017f":{"name":"delete_repo"}}'],
  ])('duplicate or look-alike keys (%s) are refused', async (_what, body) => {
    const r = await refused(body);
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body).error.message).toMatch(/appears twice|spelled like/);
  });

  it.each([
    ['no params', '{"jsonrpc":"2.0","id":1,"method":"tools/call"}'],
    ['params an array', '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["delete_repo"]}'],
    ['name missing', '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}'],
    ['name a number', '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}'],
    ['name a list', '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["delete_repo"]}}'],
    ['name only in _meta', '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"name":"search_docs"}}}'],
    ['method not a string', '{"jsonrpc":"2.0","id":1,"method":["tools/call"],"params":{"name":"delete_repo"}}'],
    ['method and result', '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_repo"},"result":{}}'],
    ['no jsonrpc', '{"id":1,"method":"tools/call","params":{"name":"delete_repo"}}'],
    ['an empty batch', '[]'],
    ['not JSON', 'tools/call delete_repo'],
    ['a byte-order mark', '\ufeff' + call('delete_repo')],
    ['a trailing comma', '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_repo"},}'],
    ['two values', call('search_docs') + call('delete_repo')],
  ])('a body Airlock cannot read with certainty (%s) is refused with 400', async (_what, body) => {
    const r = await refused(body);
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body)).toMatchObject({ jsonrpc: '2.0', error: { code: expect.any(Number), message: expect.stringMatching(/^Airlock cannot check/) } });
  });

  it('a tool name in _meta changes nothing: the tool run is params.name', async () => {
    const r = await post(call('search_docs', 3, {}).replace('"arguments":{}', '"arguments":{},"_meta":{"name":"delete_repo"}'));
    expect(r.status).toBe(200);
    expect(standIn.ran.at(-1)).toBe('search_docs');
  });

  it('a tools/call sent as a notification (no id) is refused too', async () => {
    const r = await refused('{"jsonrpc":"2.0","method":"tools/call","params":{"name":"delete_repo"}}');
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body)).toMatchObject({ id: null, error: { code: -32001 } });
  });

  it('the Content-Type does not matter: a text/plain body is read as JSON-RPC all the same', async () => {
    const r = await refused(call('delete_repo'), { ...STREAMABLE, 'content-type': 'text/plain' });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).error.message).toMatch(/delete_repo/);
    const none = await refused(call('delete_repo'), { accept: STREAMABLE.accept, authorization: STREAMABLE.authorization });
    expect(JSON.parse(none.body).error.code).toBe(-32001);
  });

  it('a body in UTF-16 (which a server told charset=utf-16 could decode) is refused: it is not strict UTF-8 JSON', async () => {
    const r = await refused(Buffer.from(call('delete_repo'), 'utf16le'), { ...STREAMABLE, 'content-type': 'application/json; charset=utf-16le' });
    expect(r.status).toBe(400);
    const invalid = await refused(Buffer.concat([Buffer.from(call('search_docs').slice(0, -1)), Buffer.from([0xff, 0x7d])]));
    expect(invalid.status).toBe(400);
  });

  it('a gzip-encoded body is refused with 415 (it would be read compressed)', async () => {
    const r = await refused(gzipSync(call('delete_repo')), { ...STREAMABLE, 'content-encoding': 'gzip' });
    expect(r.status).toBe(415);
    expect(JSON.parse(r.body).error.message).toMatch(/must be sent uncompressed/);
  });

  it('a chunked body is read whole before it is decided: refused when unlisted, passed when listed', async () => {
    const chunked = { ...STREAMABLE, 'transfer-encoding': 'chunked' };
    const r = await refused(call('delete_repo'), chunked);
    expect(JSON.parse(r.body).error.code).toBe(-32001);
    const ok = await post(call('read_file'), chunked);
    expect(ok.status).toBe(200);
    expect(standIn.ran.at(-1)).toBe('read_file');
  });

  it('an oversized body is refused with 413, declared or chunked', async () => {
    const big = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'search_docs', arguments: { arg: 'x'.repeat(5 * 1024 * 1024) } } });
    const declared = await refused(big);
    expect(declared.status).toBe(413);
    expect(JSON.parse(declared.body).error.message).toMatch(/may be at most 4194304 bytes/);
    const chunked = await refused(big, { ...STREAMABLE, 'transfer-encoding': 'chunked' });
    expect(chunked.status).toBe(413);
  });

  it('the legacy transport\'s POST gets the refusal as a 403 (its client shows only a failed POST)', async () => {
    const r = await refused(call('delete_repo', 5), { 'content-type': 'application/json', authorization: STREAMABLE.authorization });
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body)).toMatchObject({ id: 5, error: { code: -32001 } });
  });

  it('every refusal is audited with what was asked', async () => {
    const line = await airlock.waitForAudit((l) => (l.detail ?? '').startsWith('mcp batch: tools/call "search_docs"; tools/call "delete_repo" (not listed)'));
    expect(line).toMatchObject({ action: 'deny', reason: 'mcp_not_allowed' });
  });
});

/** Opens a TLS tunnel to scripted.example.com and sends one raw request; data arrives in `chunks`. */
async function rawRequest(path: string, method = 'GET', extra: string[] = []): Promise<{ socket: tls.TLSSocket; text: () => string }> {
  const socket = await openTunnelTls({ proxyPort: airlock.port, proxyAuthorization: airlock.proxyAuthorization, target: 'scripted.example.com:443', servername: 'scripted.example.com', ca });
  let text = '';
  socket.on('data', (c: Buffer) => (text += c.toString('utf8')));
  socket.write([`${method} ${path} HTTP/1.1`, 'Host: scripted.example.com', 'Accept: text/event-stream', ...extra, '', ''].join('\r\n'));
  return { socket, text: () => text };
}

const TOOLS_LIST = (id: number) => JSON.stringify({ jsonrpc: '2.0', id, result: { tools: [{ name: 'read_file', inputSchema: { type: 'object' } }, { name: 'delete_repo', inputSchema: { type: 'object' } }], _meta: { hidden: 'delete_repo' } } });

describe('what the server sends back', () => {
  it('a GET event stream is filtered event by event as it streams; unreadable events are dropped', async () => {
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    scripts.set('/stream', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      // CRLF line ends, an event split across writes.
      const first = `id: 1\r\ndata: ${TOOLS_LIST(1)}\r\n\r\n`;
      res.write(first.slice(0, 20));
      setTimeout(() => res.write(first.slice(20)), 20);
      void released.then(() => {
        res.write(': keep-alive\n\n');
        res.write('data: {"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"delete_repo"}]},"result":{"tools":[]}}\n\n');
        res.write('data: not json at all\n\n');
        res.write(`event: message\ndata: ${TOOLS_LIST(3)}\n\n`);
        res.end('data: {"jsonrpc":"2.0","method":"notifications/tools/list_changed"}\n\n');
      });
    });
    const { socket, text } = await rawRequest('/stream');
    // The first event arrives, filtered, while the server still holds the stream open.
    await waitFor(() => text().includes('"id":1'), 5_000, 'the first event');
    expect(text()).not.toContain('delete_repo');
    release();
    await waitFor(() => text().includes('list_changed'), 5_000, 'the last event');
    socket.destroy();
    const all = text();
    expect(all).not.toContain('delete_repo');
    expect(all).not.toContain('not json at all');
    expect(all).toContain(': keep-alive');
    const events = all.split('\n').filter((l) => l.startsWith('data: ')).map((l) => JSON.parse(l.slice(6)));
    expect(events.map((e) => e.id ?? e.method)).toEqual([1, 3, 'notifications/tools/list_changed']);
    expect(events[0].result).toEqual({ tools: [{ name: 'read_file', inputSchema: { type: 'object' } }] });
    const line = await airlock.waitForAudit((l) => l.path === '/stream');
    expect(line.detail).toBe('mcp tools/list hid 2 of 4 tools, dropped 2 unreadable messages');
  });

  it('an event longer than the limit cuts the stream off instead of being held whole', async () => {
    scripts.set('/huge-event', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`data: ${TOOLS_LIST(1)}\n\n`);
      const piece = 'x'.repeat(64 * 1024);
      let sent = 0;
      const more = () => {
        while (sent < 6 * 1024 * 1024) {
          sent += piece.length;
          if (!res.write(sent === piece.length ? `data: "${piece}` : piece)) return void res.once('drain', more);
        }
        res.end('"\n\n');
      };
      more();
      res.on('close', () => undefined);
    });
    const { socket, text } = await rawRequest('/huge-event');
    await new Promise<void>((resolve) => socket.once('close', () => resolve()));
    expect(text()).toContain('"id":1');
    expect(text().length).toBeLessThan(1024 * 1024);
    const line = await airlock.waitForAudit((l) => l.path === '/huge-event');
    expect(line.detail).toMatch(/response cut off: an event-stream event is longer than 4194304 bytes/);
  });

  it('a JSON answer filed as text/plain is filtered all the same; a compressed answer is refused', async () => {
    scripts.set('/lying', (_req, res) => res.writeHead(200, { 'content-type': 'text/plain' }).end(TOOLS_LIST(9)));
    const r = await httpsViaProxy({ proxyPort: airlock.port, proxyAuthorization: airlock.proxyAuthorization, url: 'https://scripted.example.com/lying', ca });
    expect(JSON.parse(r.body)).toEqual({ jsonrpc: '2.0', id: 9, result: { tools: [{ name: 'read_file', inputSchema: { type: 'object' } }] } });
    scripts.set('/gzip', (req, res) => {
      expect(req.headers['accept-encoding']).toBeUndefined();
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' }).end(gzipSync(TOOLS_LIST(10)));
    });
    const z = await httpsViaProxy({ proxyPort: airlock.port, proxyAuthorization: airlock.proxyAuthorization, url: 'https://scripted.example.com/gzip', ca, headers: { 'accept-encoding': 'gzip' } });
    expect(z.status).toBe(502);
    expect(z.body).toMatch(/Content-Encoding "gzip", which Airlock cannot check/);
  });

  it('a JSON answer with duplicate keys is cut off, not passed', async () => {
    scripts.set('/dup', (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","id":1,"result":{"tools":[]},"result":{"tools":[{"name":"delete_repo"}]}}'));
    const r = await httpsViaProxy({ proxyPort: airlock.port, proxyAuthorization: airlock.proxyAuthorization, url: 'https://scripted.example.com/dup', ca }).catch((err: Error) => ({ body: '', error: err.message }));
    expect(r.body).not.toContain('delete_repo');
  });

  it('a WebSocket upgrade to an MCP host is refused; the server never sees it', async () => {
    const { socket, text } = await rawRequest('/ws', 'GET', ['Upgrade: websocket', 'Connection: Upgrade', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version: 13']);
    await waitFor(() => text().includes('\r\n\r\n'), 5_000, 'an answer');
    socket.destroy();
    expect(text()).toMatch(/^HTTP\/1\.1 403 /);
    expect(text()).toMatch(/MCP is checked over HTTP only/);
    expect(upgrades).toBe(0);
  });
});
