// The mcp: block of a rule: parsing (errors name file, line and field), what decide() makes of a
// host an mcp: rule covers, the JSON-RPC decision and the tools/list filter, and the strict JSON
// and event-stream readers they stand on.
import { describe, expect, it } from 'vitest';
import { decide, decideMcpBody, filterToolsResult, parsePolicy, parseStrictJson, PolicyError, type RequestFacts } from '../../src/policy/index.js';
import { MAX_BATCH } from '../../src/policy/mcp-decide.js';
import { MAX_KEYS } from '../../src/policy/strict-json.js';
import { SseReader, SseTooLarge } from '../../src/proxy/mcp/sse.js';

const rule = (body: string, extra = '') => `version: 1\nname: mcp\nallow:\n  - host: mcp.example.com\n${extra}    mcp:\n${body}`;

function error(text: string): PolicyError {
  try {
    parsePolicy(text, 'p.yaml');
  } catch (err) {
    expect(err).toBeInstanceOf(PolicyError);
    return err as PolicyError;
  }
  throw new Error('parsed');
}

describe('mcp: parsing', () => {
  it('reads tools, paths beside it, and an empty list', () => {
    const p = parsePolicy(rule('      tools: ["search_*", read_file]\n', '    paths: ["/mcp"]\n'), 'p.yaml');
    expect(p.allow[0]).toMatchObject({ mcp: { tools: ['search_*', 'read_file'] }, paths: ['/mcp'] });
    expect(parsePolicy(rule('      tools: []\n'), 'p.yaml').allow[0]!.mcp).toEqual({ tools: [] });
  });

  it.each([
    ['      tool: [a]\n', 'p.yaml:6: allow[0].mcp.tool: unknown key "tool" (did you mean "tools"?)'],
    ['      {}\n', 'p.yaml:6: allow[0].mcp.tools: is missing'],
    ['      tools: read_file\n', 'p.yaml:6: allow[0].mcp.tools: must be a list'],
    ['      tools: ["read file"]\n', 'p.yaml:6: allow[0].mcp.tools[0]: "read file" is not a tool-name glob'],
    ['      tools: [1]\n', 'p.yaml:6: allow[0].mcp.tools[0]: must be text'],
  ])('%j is refused naming file, line and field', (body, expected) => {
    expect(error(rule(body)).message).toContain(expected);
  });

  it('cannot be combined with inspect: false, git: or github:', () => {
    expect(error(rule('      tools: [a]\n', '    inspect: false\n')).message).toContain('allow[0].inspect: mcp: needs inspection');
    expect(error(rule('      tools: [a]\n', '    github: { repos: ["a/b"] }\n')).message).toMatch(/github cannot be combined with (mcp|github)|github: decides methods/);
  });
});

const facts = (method: string, path: string, host = 'mcp.example.com'): RequestFacts => ({ phase: 'request', scheme: 'https', host, port: 443, method, path });

describe('mcp: decisions', () => {
  const policy = parsePolicy(
    `version: 1\nname: m\nallow:\n  - host: mcp.example.com\n    paths: ["/mcp"]\n    mcp:\n      tools: [read_file]\n  - host: "*.example.com"\n`,
    'p.yaml',
  );

  it('a request the rule allows carries the rule to the body check', () => {
    expect(decide(policy, facts('POST', '/mcp'))).toMatchObject({ action: 'allow', mcp: { rule: { tools: ['read_file'] }, label: 'allow[0] mcp.example.com' } });
  });

  it('without paths:, a host an mcp: rule covers is for mcp: rules alone: a plain rule beside it opens nothing', () => {
    const whole = parsePolicy(`version: 1\nname: m\nallow:\n  - host: mcp.example.com\n    methods: [GET, POST]\n    mcp:\n      tools: [read_file]\n  - host: "*.example.com"\n`, 'p.yaml');
    expect(decide(whole, facts('PUT', '/other'))).toMatchObject({ action: 'deny', reason: 'method_not_allowed', rule: 'allow[0] mcp.example.com' });
    expect(decide(whole, facts('POST', '/other'))).toMatchObject({ action: 'allow', mcp: { label: 'allow[0] mcp.example.com' } });
    expect(decide(whole, facts('PUT', '/other', 'other.example.com'))).toMatchObject({ action: 'allow' });
    // With paths:, other paths of the host are for the other rules.
    expect(decide(policy, facts('POST', '/other'))).toMatchObject({ action: 'allow', rule: 'allow[1] *.example.com' });
  });

  it('paths no mcp: rule names are left to the other rules of the host (an OAuth endpoint beside /mcp)', () => {
    const p = parsePolicy(
      `version: 1\nname: m\nallow:\n  - host: mcp.example.com\n    paths: ["/mcp"]\n    mcp:\n      tools: [read_file]\n  - host: mcp.example.com\n    paths: ["/token"]\n  - host: mcp.example.com\n    paths: ["/mcp"]\n`,
      'p.yaml',
    );
    expect(decide(p, facts('POST', '/token'))).toMatchObject({ action: 'allow', rule: 'allow[1] mcp.example.com' });
    expect(decide(p, facts('POST', '/token')).mcp).toBeUndefined();
    // The plain rule for /mcp itself never decides: the mcp: rule does.
    expect(decide(p, facts('POST', '/mcp'))).toMatchObject({ action: 'allow', rule: 'allow[0] mcp.example.com', mcp: { label: 'allow[0] mcp.example.com' } });
    expect(decide(p, facts('POST', '/other'))).toMatchObject({ action: 'deny' });
  });

  it('tools/call names a listed tool or is refused; other methods pass', () => {
    const r = { tools: ['read_file'] };
    expect(decideMcpBody('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file"}}', r, 'L', 'h')).toMatchObject({ ok: true, detail: 'mcp tools/call "read_file"' });
    expect(decideMcpBody('{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"x"}}', r, 'L', 'h')).toMatchObject({ ok: true, detail: 'mcp resources/read' });
    expect(decideMcpBody('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"rm"}}', r, 'L', 'h')).toMatchObject({
      ok: false,
      reason: 'mcp_not_allowed',
      message: 'Airlock: MCP tool "rm" on h is not allowed: L allows tools read_file (mcp.tools)',
    });
    expect(decideMcpBody(null, r, 'L', 'h')).toMatchObject({ ok: false, reason: 'bad_request', detail: 'mcp: body not UTF-8' });
  });

  it('tools/list results keep only listed tools and the cursor', () => {
    const msg = parseStrictJson('{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read_file"},{"name":"rm"},"junk"],"nextCursor":"c","_meta":{"x":"rm"}}}');
    expect(filterToolsResult(msg, ['read_file'])).toEqual({ message: { jsonrpc: '2.0', id: 1, result: { tools: [{ name: 'read_file' }], nextCursor: 'c' } }, hidden: 2, total: 3 });
    expect(filterToolsResult(parseStrictJson('{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read_file"}]}}'), ['read_file'])).toBeNull();
    expect(filterToolsResult(parseStrictJson('{"jsonrpc":"2.0","id":1,"result":{"content":[]}}'), ['read_file'])).toBeNull();
  });
});

describe('strict JSON', () => {
  it.each([['{"a":1,"a":2}'], ['{"a":1,"A":2}'], ['{"a":1,"\\u0061":2}'], ['\ufeff{}'], ['{}{}'], ['[1,]'], ['NaN'], ['"\u0001"'], ['[' .repeat(70) + ']'.repeat(70)]])('refuses %j', (text) => {
    expect(() => parseStrictJson(text)).toThrow();
  });

  it('refuses more keys than MAX_KEYS, quickly; a batch past MAX_BATCH is refused too', () => {
    const many = '{' + Array.from({ length: MAX_KEYS + 1 }, (_, i) => `"k${i}":1`).join(',') + '}';
    const started = performance.now();
    expect(() => parseStrictJson(many)).toThrow(/more than 50000 object keys/);
    expect(performance.now() - started).toBeLessThan(1000);
    const batch = JSON.stringify(Array.from({ length: MAX_BATCH + 1 }, (_, i) => ({ jsonrpc: '2.0', id: i, method: 'ping' })));
    expect(decideMcpBody(batch, { tools: [] }, 'L', 'h')).toMatchObject({ ok: false, reason: 'bad_request', detail: 'mcp: batch too large' });
  });

  it.each([['{"a'], ['{"a\\"'], ['"'], ['["\\\\"']])('an unterminated string %j is refused, not looped on', (text) => {
    expect(() => parseStrictJson(text)).toThrow();
  });

  it('reads what JSON.parse reads when keys are unique', () => {
    const text = '{"a":[1,-2.5e3,true,false,null,"x\\n\\u00e9\\/"],"__proto__":{"b":{}}}';
    expect(JSON.stringify(parseStrictJson(text))).toBe(JSON.stringify(JSON.parse(text)));
  });
});

describe('the event-stream reader', () => {
  const passAll = () => new SseReader(() => ({ pass: true }), 1000);

  it('reads CRLF, LF and CR line ends, events split anywhere, and drops an unfinished last event', () => {
    const r = passAll();
    let out = '';
    for (const piece of ['data: a\r', '\ndata: b\r\n\r', '\nevent: x\rdata: c\r\r', 'data: unfinished']) out += r.push(Buffer.from(piece));
    out += r.end();
    expect(out).toBe('data: a\ndata: b\n\nevent: x\ndata: c\n\n');
  });

  it('rewrites data in place, keeping id and event, and drops what the judge drops', () => {
    const r = new SseReader((e) => (e.data === 'drop' ? { drop: 'x' } : e.data === 'old' ? { data: 'new' } : { pass: true }), 1000);
    expect(r.push(Buffer.from('id: 1\ndata: old\nevent: m\n\ndata: drop\n\n: c\n\n'))).toBe('id: 1\ndata: new\nevent: m\n\n: c\n\n');
  });

  it('an event over the limit is an error, whether in one line or many', () => {
    expect(() => passAll().push(Buffer.from('data: ' + 'x'.repeat(2000)))).toThrow(SseTooLarge);
    expect(() => passAll().push(Buffer.from('data: x\n'.repeat(300)))).toThrow(SseTooLarge);
    // Many small events are fine: the limit is per event.
    expect(passAll().push(Buffer.from('data: x\n\n'.repeat(3000))).length).toBe(3000 * 9);
  });
});
