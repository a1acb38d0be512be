// Recorded-shape stand-ins of the two LLM APIs whose usage Airlock reads: the Anthropic Messages
// API (POST /v1/messages, JSON or SSE with message_start/message_delta usage) and the OpenAI Chat
// Completions (JSON, or a chunk stream whose last chunk carries usage when the request asked for
// stream_options.include_usage) and Responses APIs (JSON, or SSE ending with response.completed).
// Event and field shapes follow the APIs' documented answers; text and ids are made up.
import type http from 'node:http';
import { gzipSync } from 'node:zlib';

export interface LlmCall {
  readonly path: string;
  readonly stream: boolean;
  readonly model: string;
  readonly authorization: string | undefined;
  readonly apiKey: string | undefined;
}

/** Token counts every answer reports (fixed so a test can sum them). */
export interface StandInUsage {
  readonly input: number;
  readonly output: number;
  readonly cacheRead: number;
  readonly cacheWrite: number;
}

const sse = (event: string | null, data: unknown) => `${event ? `event: ${event}\n` : ''}data: ${JSON.stringify(data)}\n\n`;

function readJson(req: http.IncomingMessage, then: (body: Record<string, unknown>) => void): void {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    let body: Record<string, unknown> = {};
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
    } catch {
      /* an empty body */
    }
    then(body);
  });
}

/** Writes an SSE answer in several writes, a few events per write, as a real server flushes. */
function stream(res: http.ServerResponse, events: string[]): void {
  res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache' });
  let i = 0;
  const next = () => {
    if (i >= events.length) {
      res.end();
      return;
    }
    res.write(events.slice(i, i + 2).join(''));
    i += 2;
    setImmediate(next);
  };
  next();
}

function json(res: http.ServerResponse, body: unknown, gzip: boolean): void {
  const text = Buffer.from(JSON.stringify(body));
  if (gzip) {
    const z = gzipSync(text);
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Encoding': 'gzip', 'Content-Length': z.length });
    res.end(z);
    return;
  }
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': text.length });
  res.end(text);
}

/**
 * The Messages API. `gzip`: JSON answers are gzip-encoded when the client accepts it, as the real
 * API's are. Answers 401 unless x-api-key (or a bearer token) is `key` (when given).
 */
export function anthropicStandIn(u: StandInUsage, opts: { key?: string; gzip?: boolean } = {}) {
  const calls: LlmCall[] = [];
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    readJson(req, (body) => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      const model = String(body.model ?? 'claude-test');
      const apiKey = req.headers['x-api-key'] as string | undefined;
      calls.push({ path, stream: body.stream === true, model, authorization: req.headers.authorization, apiKey });
      if (opts.key !== undefined && apiKey !== opts.key && req.headers.authorization !== `Bearer ${opts.key}`) {
        res.writeHead(401, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ type: 'error', error: { type: 'authentication_error', message: 'invalid x-api-key' } }));
        return;
      }
      if (req.method !== 'POST' || path !== '/v1/messages') {
        res.writeHead(404, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ type: 'error', error: { type: 'not_found_error', message: 'Not found' } }));
        return;
      }
      const id = 'msg_01XFDUDYJgAACzvnptvVoYEL';
      const usage = { input_tokens: u.input, cache_creation_input_tokens: u.cacheWrite, cache_read_input_tokens: u.cacheRead, output_tokens: u.output, service_tier: 'standard' };
      if (body.stream !== true) {
        const accepts = /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
        json(res, { id, type: 'message', role: 'assistant', model, content: [{ type: 'text', text: 'Hello! How can I help?' }], stop_reason: 'end_turn', stop_sequence: null, usage }, Boolean(opts.gzip && accepts));
        return;
      }
      const events = [
        sse('message_start', { type: 'message_start', message: { id, type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: { ...usage, output_tokens: 1 } } }),
        sse('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }),
        sse('ping', { type: 'ping' }),
        ...['Hello', '! How', ' can I help?'].map((text) => sse('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } })),
        sse('content_block_stop', { type: 'content_block_stop', index: 0 }),
        sse('message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: u.output } }),
        sse('message_stop', { type: 'message_stop' }),
      ];
      stream(res, events);
    });
  };
  return { handler, calls };
}

/** Chat Completions and Responses. Answers 401 unless the bearer token is `key` (when given). */
export function openaiStandIn(u: StandInUsage, opts: { key?: string } = {}) {
  const calls: LlmCall[] = [];
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    readJson(req, (body) => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      const model = String(body.model ?? 'gpt-test');
      calls.push({ path, stream: body.stream === true, model, authorization: req.headers.authorization, apiKey: undefined });
      if (opts.key !== undefined && req.headers.authorization !== `Bearer ${opts.key}`) {
        res.writeHead(401, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ error: { message: 'Incorrect API key provided', type: 'invalid_request_error', code: 'invalid_api_key' } }));
        return;
      }
      const prompt = u.input + u.cacheRead; // OpenAI's input counts include the cached part
      if (path === '/v1/chat/completions') {
        const usage = {
          prompt_tokens: prompt, completion_tokens: u.output, total_tokens: prompt + u.output,
          prompt_tokens_details: { cached_tokens: u.cacheRead, audio_tokens: 0 },
          completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
        };
        const base = { id: 'chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT', created: 1741569952, model, system_fingerprint: 'fp_44709d6fcb', service_tier: 'default' };
        if (body.stream !== true) {
          json(res, { ...base, object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: 'Hello there!', refusal: null, annotations: [] }, logprobs: null, finish_reason: 'stop' }], usage }, false);
          return;
        }
        const include = (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true;
        const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) => sse(null, { ...base, object: 'chat.completion.chunk', choices, ...(include ? { usage: null } : {}), ...extra });
        const events = [
          chunk([{ index: 0, delta: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: null }]),
          ...['Hello', ' there', '!'].map((content) => chunk([{ index: 0, delta: { content }, logprobs: null, finish_reason: null }])),
          chunk([{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }]),
          ...(include ? [chunk([], { usage })] : []),
          'data: [DONE]\n\n',
        ];
        stream(res, events);
        return;
      }
      if (path === '/v1/responses') {
        const usage = { input_tokens: prompt, input_tokens_details: { cached_tokens: u.cacheRead }, output_tokens: u.output, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: prompt + u.output };
        const item = { id: 'msg_67ccd3acc8d48190a77525dc6de64b4104becb25c45c1d41', type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: 'Hello there!', annotations: [] }] };
        const response = { id: 'resp_67ccd3a9da748190baa7f1570fe91ac604becb25c45c1d41', object: 'response', created_at: 1741476777, status: 'completed', error: null, model, output: [item], parallel_tool_calls: true, temperature: 1, tool_choice: 'auto', tools: [], top_p: 1, usage };
        if (body.stream !== true) {
          json(res, response, false);
          return;
        }
        const inProgress = { ...response, status: 'in_progress', output: [], usage: null };
        let seq = 0;
        const ev = (data: Record<string, unknown>) => sse(String(data.type), { ...data, sequence_number: seq++ });
        const events = [
          ev({ type: 'response.created', response: inProgress }),
          ev({ type: 'response.in_progress', response: inProgress }),
          ev({ type: 'response.output_item.added', output_index: 0, item: { ...item, status: 'in_progress', content: [] } }),
          ...['Hello', ' there!'].map((delta) => ev({ type: 'response.output_text.delta', item_id: item.id, output_index: 0, content_index: 0, delta })),
          ev({ type: 'response.output_text.done', item_id: item.id, output_index: 0, content_index: 0, text: 'Hello there!' }),
          ev({ type: 'response.output_item.done', output_index: 0, item }),
          ev({ type: 'response.completed', response }),
        ];
        stream(res, events);
        return;
      }
      res.writeHead(404, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error: { message: `Invalid URL (${req.method} ${path})`, type: 'invalid_request_error' } }));
    });
  };
  return { handler, calls };
}
