// mcp: rules with the official MCP TypeScript SDK on both sides: its client, through an Airlock
// session that holds only a placeholder token, to its server on loopback over real TLS (named
// mcp.example.com by the resolve override), on every HTTP transport: streamable HTTP with JSON
// answers, streamable HTTP with event-stream answers, and the older HTTP+SSE transport. A listed
// tool runs with the real token swapped in; an unlisted one is refused with an error the SDK
// client shows, and never reaches the server; tools/list shows only the listed tools.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { ProxyAgent, fetch as undiciFetch } from 'undici';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { createTestPki, rmTmp, startAirlock, startHttpsUpstream } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import { credentialsFactory } from '../../src/credentials/sources.js';
import { secretLeaks } from '../helpers/secret-leaks.js';
import { mcpStandIn, type McpStandIn } from '../helpers/mcp-standin.js';
import { suggestPolicy } from '../../src/audit/suggest.js';

const SECRET = 'mcp_RealServerToken_0123456789abcdefXYZ';
const PLACEHOLDER = 'mcp_airlockPlaceholder_00000000000000';

const policy = (mode: 'enforce' | 'report') => `version: 1
name: mcp-tools
mode: ${mode}
allow:
  - host: mcp.example.com
    mcp:
      tools: ["search_*", "read_file"]
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
let standIn: McpStandIn;
let airlock: AirlockHandle;
let reportAirlock: AirlockHandle;

beforeAll(async () => {
  pki = await createTestPki();
  standIn = mcpStandIn(SECRET);
  upstream = await startHttpsUpstream({ pki, names: ['mcp.example.com'], handler: standIn.handler });
  const common = {
    resolve: { 'mcp.example.com:443': upstream.port },
    upstreamCa: [pki.caPem],
    credentials: credentialsFactory({ AIRLOCK_MCP_TOKEN: SECRET }),
  };
  airlock = await startAirlock({ policy: policy('enforce'), ...common });
  reportAirlock = await startAirlock({ policy: policy('report'), ...common });
}, 60_000);

afterAll(async () => {
  await airlock?.close();
  await reportAirlock?.close();
  await standIn?.close();
  await upstream?.close();
  rmTmp(pki?.dir);
});

type Kind = 'streamable-json' | 'streamable-sse' | 'sse';

/** An SDK client connected through `through` with the placeholder as its bearer token. */
async function connect(kind: Kind, through: AirlockHandle): Promise<{ client: Client; errors: string[] }> {
  const dispatcher = new ProxyAgent({ uri: through.proxyUrl, requestTls: { ca: readFileSync(through.bundlePath, 'utf8') } });
  const viaProxy = ((url: string | URL, init?: RequestInit) => undiciFetch(url, { ...(init as object), dispatcher })) as unknown as typeof fetch;
  const opts = { fetch: viaProxy, requestInit: { headers: { Authorization: `Bearer ${PLACEHOLDER}` } } };
  const transport: Transport =
    kind === 'sse'
      ? new SSEClientTransport(new URL('https://mcp.example.com/sse'), opts)
      : new StreamableHTTPClientTransport(new URL(`https://mcp.example.com/${kind === 'streamable-json' ? 'mcp-json' : 'mcp-sse'}`), opts);
  const client = new Client({ name: 'airlock-test', version: '1.0.0' });
  const errors: string[] = [];
  client.onerror = (err) => errors.push(String(err));
  await client.connect(transport);
  return { client, errors };
}

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return String((err as Error).message ?? err);
  }
  throw new Error('the call was not refused');
}

describe.each<Kind>(['streamable-json', 'streamable-sse', 'sse'])('the MCP SDK through an mcp: rule (%s)', (kind) => {
  it('lists only the listed tools, runs a listed tool with the real token, refuses an unlisted one', async () => {
    const { client } = await connect(kind, airlock);
    try {
      const listed = await client.listTools();
      expect(listed.tools.map((t) => t.name).sort()).toEqual(['read_file', 'search_docs']);

      const ok = await client.callTool({ name: 'search_docs', arguments: { arg: kind } });
      expect(ok.content).toEqual([{ type: 'text', text: `search_docs ran with ${kind}` }]);
      expect(standIn.ran.at(-1)).toBe('search_docs');

      const ranBefore = standIn.ran.length;
      const bodiesBefore = standIn.bodies.length;
      // The older transport's client shows the refused POST's body as it came: JSON, quotes escaped.
      const message = (await refusal(client.callTool({ name: 'delete_repo', arguments: { arg: kind } }))).replace(/\\"/g, '"');
      if (kind === 'sse') expect(message).toMatch(/^Error POSTing to endpoint \(HTTP 403\): \{"jsonrpc":"2.0","id":\d+,"error":\{"code":-32001/);
      else expect(message).toMatch(/^MCP error -32001: Airlock: /);
      expect(message).toContain('Airlock: MCP tool "delete_repo" on mcp.example.com is not allowed: allow[0] mcp.example.com allows tools search_*, read_file (mcp.tools)');
      expect(message).toContain('http://airlock.internal/request-access');
      expect(secretLeaks(message, SECRET)).toEqual([]);
      // Nothing of the refused call reached the server.
      expect(standIn.ran.length).toBe(ranBefore);
      expect(standIn.bodies.slice(bodiesBefore).some((b) => b.includes('delete_repo'))).toBe(false);

      // The client goes on working after the refusal.
      const again = await client.callTool({ name: 'read_file', arguments: { arg: 'x' } });
      expect(again.content).toEqual([{ type: 'text', text: 'read_file ran with x' }]);
    } finally {
      await client.close();
    }
    // Where each transport POSTs its messages, and where the tools/list answer comes back.
    const posts = kind === 'sse' ? '/messages?' : `/${kind === 'streamable-json' ? 'mcp-json' : 'mcp-sse'}`;
    const answers = kind === 'sse' ? '/sse' : posts;
    // Lines are written when their exchanges close, which may be just after the client has its answer.
    const denied = await airlock.waitForAudit((l) => l.path.startsWith(posts) && l.detail === 'mcp tools/call "delete_repo" (not listed)' && l.action === 'deny');
    expect(denied).toMatchObject({ reason: 'mcp_not_allowed', rule: 'allow[0] mcp.example.com', credentials: [] });
    const allowed = await airlock.waitForAudit((l) => l.path.startsWith(posts) && l.detail === 'mcp tools/call "search_docs"' && l.action === 'allow');
    expect(allowed.credentials).toEqual(['mcp']);
    // The list was filtered on the line that carried it: the POST's answer, or the /sse stream.
    await airlock.waitForAudit((l) => l.path.startsWith(answers) && /tools\/list hid 1 of 3 tools/.test(l.detail ?? ''), 5_000);
    const lines = (await airlock.auditLines()).filter((l) => l.path.startsWith(posts) || l.path.startsWith(answers));
    expect(secretLeaks(JSON.stringify(lines), SECRET)).toEqual([]);
  }, 60_000);
});

describe('report mode', () => {
  it('lets an unlisted tool run, audits it as would_deny, and suggest turns the calls into an mcp: rule', async () => {
    const { client } = await connect('streamable-json', reportAirlock);
    try {
      const listed = await client.listTools();
      expect(listed.tools.map((t) => t.name).sort()).toEqual(['delete_repo', 'read_file', 'search_docs']);
      const r = await client.callTool({ name: 'delete_repo', arguments: { arg: 'report' } });
      expect(r.content).toEqual([{ type: 'text', text: 'delete_repo ran with report' }]);
      await client.callTool({ name: 'search_docs', arguments: {} });
    } finally {
      await client.close();
    }
    const line = await reportAirlock.waitForAudit((l) => l.detail === 'mcp tools/call "delete_repo" (not listed)');
    // A line is written when its exchange closes, which may be just after the client has its answer.
    await reportAirlock.waitForAudit((l) => l.detail === 'mcp tools/call "search_docs"');
    expect(line).toMatchObject({ action: 'would_deny', reason: 'mcp_not_allowed', status: 200 });
    const suggestion = suggestPolicy(await reportAirlock.auditLines(), { session: reportAirlock.session.id });
    const rule = suggestion.policy.allow.find((r) => r.host === 'mcp.example.com');
    expect(rule?.mcp?.tools).toEqual(['delete_repo', 'search_docs']);
    expect(suggestion.text).toMatch(/mcp:\n\s+tools: \[ ?delete_repo, search_docs ?\]/);
  }, 60_000);
});
