// A stand-in of the OpenAI Responses API, as far as Codex CLI needs it: POST /v1/responses,
// streamed as server-sent events. It answers 401 unless the request carries `realKey`, as the real
// API would, and records what each request carried so a test can check the key swap.
import type http from 'node:http';
import { randomBytes } from 'node:crypto';

/**
 * A policy for Codex: api.openai.com with the `openai` credential (its secret from
 * AIRLOCK_OPENAI_KEY), plus `otherHosts` allowed but not bound to the credential.
 */
export function codexPolicy(otherHosts: readonly string[] = []): string {
  const allow = ['api.openai.com', ...otherHosts].map((host) => `  - host: ${host}\n    ports: [443]\n`).join('');
  return `version: 1\nname: codex-test\nallow:\n${allow}credentials:\n  - preset: openai\n    secret: { env: AIRLOCK_OPENAI_KEY }\n`;
}

export interface ResponsesCall {
  readonly path: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly stream: boolean;
  readonly model: string;
  /** The bearer token the request carried (undefined: none). */
  readonly bearer: string | undefined;
}

export interface ResponsesStandIn {
  readonly handler: (req: http.IncomingMessage, res: http.ServerResponse) => void;
  /** Every POST /v1/responses seen, in order (also the refused ones). */
  readonly calls: ResponsesCall[];
}

function sse(data: { type: string } & Record<string, unknown>): string {
  return `event: ${data.type}\ndata: ${JSON.stringify(data)}\n\n`;
}

export function responsesStandIn(realKey: string, reply: string): ResponsesStandIn {
  const calls: ResponsesCall[] = [];
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      if (req.method !== 'POST' || path !== '/v1/responses') {
        res.writeHead(404, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ error: { type: 'invalid_request_error', message: `${req.method} ${path}` } }));
        return;
      }
      let body: { stream?: boolean; model?: string } = {};
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        /* recorded as is */
      }
      const bearer = /^Bearer (.*)$/.exec(String(req.headers.authorization ?? ''))?.[1];
      const model = body.model ?? 'gpt-test';
      calls.push({ path, headers: { ...req.headers }, stream: Boolean(body.stream), model, bearer });
      if (bearer !== realKey) {
        res.writeHead(401, { 'Content-Type': 'application/json', 'x-request-id': 'req_standin' });
        res.end(JSON.stringify({ error: { type: 'invalid_request_error', code: 'invalid_api_key', message: 'Incorrect API key provided' } }));
        return;
      }
      const id = `resp_standin${randomBytes(6).toString('hex')}`;
      const itemId = `msg_standin${randomBytes(6).toString('hex')}`;
      const usage = { input_tokens: 12, input_tokens_details: null, output_tokens: 7, output_tokens_details: null, total_tokens: 19 };
      res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', 'x-request-id': 'req_standin' });
      res.write(sse({ type: 'response.created', response: { id, model, status: 'in_progress' } }));
      for (const [i, w] of reply.split(' ').entries()) {
        res.write(sse({ type: 'response.output_text.delta', item_id: itemId, output_index: 0, content_index: 0, delta: i ? ` ${w}` : w }));
      }
      const item = { type: 'message', role: 'assistant', id: itemId, status: 'completed', content: [{ type: 'output_text', text: reply, annotations: [] }] };
      res.write(sse({ type: 'response.output_item.done', output_index: 0, item }));
      res.write(sse({ type: 'response.completed', response: { id, model, status: 'completed', output: [item], usage } }));
      res.end();
    });
  };
  return { handler, calls };
}
