// The usage readers without sockets: the recorded answer shapes of both APIs, fed whole and cut at
// every byte, give the same counts; escapes, arrays, nesting and odd SSE framing are read as JSON
// and SSE say; error answers, other content types and encodings give no counts.
import { describe, expect, it } from 'vitest';
import { JsonFields, SseFields } from '../../src/proxy/llm/scan.js';
import { UsageTap } from '../../src/proxy/llm/tap.js';
import type { ModelPrice } from '../../src/policy/index.js';

const sse = (event: string | null, data: unknown) => `${event ? `event: ${event}\n` : ''}data: ${JSON.stringify(data)}\n\n`;

const ANTHROPIC_SSE =
  sse('message_start', { type: 'message_start', message: { id: 'msg_1', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content: [], usage: { input_tokens: 25, cache_creation_input_tokens: 3, cache_read_input_tokens: 4, output_tokens: 1 } } }) +
  sse('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }) +
  sse('ping', { type: 'ping' }) +
  sse('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'a "usage": {"output_tokens": 999} \\ \u00e9' } }) +
  sse('content_block_stop', { type: 'content_block_stop', index: 0 }) +
  sse('message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 15 } }) +
  sse('message_stop', { type: 'message_stop' });

const CHAT_SSE =
  ['Hel', 'lo'].map((c) => sse(null, { id: 'c', object: 'chat.completion.chunk', model: 'gpt-4o-mini-2024-07-18', choices: [{ index: 0, delta: { content: c } }], usage: null })).join('') +
  sse(null, { id: 'c', object: 'chat.completion.chunk', model: 'gpt-4o-mini-2024-07-18', choices: [], usage: { prompt_tokens: 19, completion_tokens: 10, total_tokens: 29, prompt_tokens_details: { cached_tokens: 8 } } }) +
  'data: [DONE]\n\n';

const RESPONSES_SSE =
  sse('response.created', { type: 'response.created', response: { id: 'r', model: 'gpt-5', usage: null, output: [] } }) +
  sse('response.output_text.delta', { type: 'response.output_text.delta', delta: '{"usage":{"input_tokens":1}}' }) +
  sse('response.completed', { type: 'response.completed', response: { id: 'r', model: 'gpt-5', output: [{ type: 'message', content: [{ type: 'output_text', text: 'x', usage: { input_tokens: 77 } }] }], usage: { input_tokens: 30, input_tokens_details: { cached_tokens: 10 }, output_tokens: 5, output_tokens_details: { reasoning_tokens: 2 } } } });

const ANTHROPIC_JSON = JSON.stringify({ id: 'msg', type: 'message', model: 'claude-haiku-4-5', content: [{ type: 'text', text: 'hi', usage: { input_tokens: 5 } }], usage: { input_tokens: 11, output_tokens: 12, cache_read_input_tokens: 0 } }, null, 2);

function tapOf(api: 'anthropic' | 'openai', type: string, body: Buffer, chunk: number, headers: Record<string, string> = {}, status = 200, pricing: ModelPrice[] = []) {
  const tap = new UsageTap(api, pricing);
  tap.head(status, { 'content-type': type, ...headers });
  for (let i = 0; i < body.length; i += chunk) tap.body(body.subarray(i, i + chunk));
  tap.end();
  return tap.result();
}

describe('usage readers', () => {
  const cases = [
    ['anthropic', 'text/event-stream; charset=utf-8', ANTHROPIC_SSE, { api: 'anthropic', model: 'claude-sonnet-4-5', input_tokens: 25, output_tokens: 15, cache_read_tokens: 4, cache_write_tokens: 3 }],
    ['openai', 'text/event-stream', CHAT_SSE, { api: 'openai', model: 'gpt-4o-mini-2024-07-18', input_tokens: 11, output_tokens: 10, cache_read_tokens: 8 }],
    ['openai', 'text/event-stream', RESPONSES_SSE, { api: 'openai', model: 'gpt-5', input_tokens: 20, output_tokens: 5, cache_read_tokens: 10 }],
    ['anthropic', 'application/json', ANTHROPIC_JSON, { api: 'anthropic', model: 'claude-haiku-4-5', input_tokens: 11, output_tokens: 12, cache_read_tokens: 0 }],
    // CRLF line ends, as some servers send.
    ['anthropic', 'text/event-stream', ANTHROPIC_SSE.replace(/\n/g, '\r\n'), { api: 'anthropic', model: 'claude-sonnet-4-5', input_tokens: 25, output_tokens: 15, cache_read_tokens: 4, cache_write_tokens: 3 }],
  ] as const;

  it.each(cases)('%s %s: the same counts whole and cut at every byte', (api, type, text, expected) => {
    const body = Buffer.from(text);
    expect(tapOf(api, type, body, body.length)).toEqual(expected);
    for (const size of [1, 2, 3, 7, 64, 1000]) expect(tapOf(api, type, body, size), `chunks of ${size}`).toEqual(expected);
  });

  it('prices a known model; no price, no cost', () => {
    const price: ModelPrice = { line: 1, model: 'claude-*', input: 3, output: 15, cacheRead: 0.3, cacheWrite: 3.75 };
    const body = Buffer.from(ANTHROPIC_SSE);
    // 25*3 + 15*15 + 4*0.3 + 3*3.75 = 312.45 per million
    expect(tapOf('anthropic', 'text/event-stream', body, 100, {}, 200, [price])).toMatchObject({ cost_usd: 0.000312 });
    expect(tapOf('anthropic', 'text/event-stream', body, 100, {}, 200, [{ ...price, model: 'gpt-*' }])).not.toHaveProperty('cost_usd');
  });

  it('error answers, other types and encodings give no counts', () => {
    const err = Buffer.from(JSON.stringify({ type: 'error', error: { type: 'overloaded_error' }, usage: { input_tokens: 3 } }));
    expect(tapOf('anthropic', 'application/json', err, 10, {}, 529)).toBeUndefined();
    expect(tapOf('anthropic', 'text/html', Buffer.from(ANTHROPIC_JSON), 10)).toEqual({ api: 'anthropic', unread: 'content-type text/html' });
    expect(tapOf('anthropic', 'application/json', Buffer.from('x'), 10, { 'content-encoding': 'br' })).toEqual({ api: 'anthropic', unread: 'content-encoding br' });
    expect(tapOf('anthropic', 'application/json', Buffer.from('{"id":1,"content":[]}'), 10)).toBeUndefined();
  });

  it('JSON: keys with escapes, values in arrays, and deeper paths do not match', () => {
    const found: Array<[string, string | number]> = [];
    const j = new JsonFields(new Set(['usage.input_tokens', 'model']), (p, v) => found.push([p, v]));
    j.write(Buffer.from('{"us\\u0061ge":{"input_tokens":1},"list":[{"usage":{"input_tokens":2}}],"x":{"usage":{"input_tokens":3}},"model":"a\\"b","usage":{"input_tokens":4 }}'));
    j.end();
    expect(found).toEqual([['usage.input_tokens', 4]]);
  });

  it('JSON: a value with no key before it belongs nowhere, even after a key of an earlier event', () => {
    const found: Array<[string, string | number]> = [];
    const s = new SseFields(new JsonFields(new Set(['usage.prompt_tokens']), (p, v) => found.push([p, v])));
    s.write(Buffer.from('data: {"usage":{"prompt_tokens":[{7}]}}\n\ndata: {"usage":{"prompt_tokens"\n\ndata: [{5}]\n\ndata: {5}\n\ndata: {"usage":{"prompt_tokens":{"a":1},8}}\n\ndata: {"usage":{"prompt_tokens":1,9}}\n\n'));
    s.end();
    expect(found).toEqual([['usage.prompt_tokens', 1]]);
  });

  it('SSE: comments, fields without a colon, multi-line data and an unfinished last event', () => {
    const found: Array<[string, string | number]> = [];
    const s = new SseFields(new JsonFields(new Set(['usage.prompt_tokens']), (p, v) => found.push([p, v])));
    s.write(Buffer.from(': keep-alive\nretry\nid: 1\ndata: {"usage":\ndata: {"prompt_tokens": 6}}\n\ndata: {"usage":{"prompt_tokens": 7'));
    s.end();
    expect(found).toEqual([['usage.prompt_tokens', 6]]);
  });
});
