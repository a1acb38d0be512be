// An MCP server made with the official TypeScript SDK, for tests through Airlock: three tools
// (search_docs, read_file, delete_repo) on every transport the SDK serves over HTTP, mounted on
// one HTTPS upstream:
//   /mcp-json   streamable HTTP, stateless, JSON answers to POSTs
//   /mcp-sse    streamable HTTP, stateless, event-stream answers to POSTs
//   /sse        the older HTTP+SSE transport's stream (GET), with /messages?sessionId= for POSTs
// It answers 401 unless the request carries `Authorization: Bearer <secret>`, and records every
// tool it ran and every body it was sent, so tests can tell what reached it.
import type http from 'node:http';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js';
import { z } from 'zod';

export const MCP_TOOLS = ['delete_repo', 'read_file', 'search_docs'] as const;

export interface McpStandIn {
  /** Tools the server ran, in order. */
  readonly ran: string[];
  /** Raw request bodies that reached it. */
  readonly bodies: string[];
  readonly handler: (req: http.IncomingMessage, res: http.ServerResponse) => void;
  close(): Promise<void>;
}

function makeServer(ran: string[]): McpServer {
  const server = new McpServer({ name: 'standin', version: '1.0.0' });
  for (const name of MCP_TOOLS) {
    server.registerTool(name, { description: `the ${name} tool`, inputSchema: { arg: z.string().optional() } }, async ({ arg }) => {
      ran.push(name);
      return { content: [{ type: 'text', text: `${name} ran with ${arg ?? '-'}` }] };
    });
  }
  return server;
}

export function mcpStandIn(secret: string): McpStandIn {
  const ran: string[] = [];
  const bodies: string[] = [];
  const sse = new Map<string, SSEServerTransport>();
  const open = new Set<McpServer>();
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (req.headers.authorization !== `Bearer ${secret}`) {
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"unauthorized"}');
      return;
    }
    const url = new URL(req.url ?? '/', 'https://mcp.example.com');
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      if (text !== '') bodies.push(text);
      let parsed: unknown;
      try {
        parsed = text === '' ? undefined : JSON.parse(text);
      } catch {
        res.writeHead(400).end('not json');
        return;
      }
      void serve(url, req, res, parsed).catch(() => {
        if (!res.headersSent) res.writeHead(500).end();
      });
    });
  };
  const serve = async (url: URL, req: http.IncomingMessage, res: http.ServerResponse, parsed: unknown): Promise<void> => {
    if (url.pathname === '/mcp-json' || url.pathname === '/mcp-sse') {
      const server = makeServer(ran);
      open.add(server);
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: url.pathname === '/mcp-json' });
      res.on('close', () => {
        void transport.close();
        void server.close();
        open.delete(server);
      });
      await server.connect(transport);
      await transport.handleRequest(req, res, parsed);
      return;
    }
    if (url.pathname === '/sse' && req.method === 'GET') {
      const server = makeServer(ran);
      open.add(server);
      const transport = new SSEServerTransport('/messages', res);
      sse.set(transport.sessionId, transport);
      res.on('close', () => {
        sse.delete(transport.sessionId);
        void server.close();
        open.delete(server);
      });
      await server.connect(transport);
      return;
    }
    if (url.pathname === '/messages' && req.method === 'POST') {
      const transport = sse.get(url.searchParams.get('sessionId') ?? '');
      if (!transport) {
        res.writeHead(404).end('no such session');
        return;
      }
      await transport.handlePostMessage(req, res, parsed);
      return;
    }
    res.writeHead(404).end('not found');
  };
  return {
    ran,
    bodies,
    handler,
    async close() {
      for (const s of open) await s.close().catch(() => {});
    },
  };
}
