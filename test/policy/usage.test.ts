// The usage: section of a policy: which extra hosts are read for LLM token usage and the price
// table, with errors that name the file, line and field; and the cost arithmetic.
import { describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { costOf, parsePolicy, PolicyError, priceFor } from '../../src/policy/index.js';
import { rmTmp, runCli, tmpDir } from '../helpers/servers.js';

const BASE = `version: 1
name: usage-test
allow:
  - host: api.anthropic.com
`;

function errorOf(text: string): PolicyError {
  try {
    parsePolicy(text, 'team.yaml');
  } catch (err) {
    if (err instanceof PolicyError) return err;
    throw err;
  }
  throw new Error('parsed without an error');
}

describe('usage: section', () => {
  it('parses apis and pricing; cache prices default to the input price', () => {
    const p = parsePolicy(
      `${BASE}usage:
  apis:
    - host: LLM.Internal.Example
      api: openai
    - host: gw.example
      api: anthropic
      paths: [/anthropic/v1/messages]
  pricing:
    - model: "claude-sonnet-4*"
      input: 3
      output: 15
      cache_read: 0.3
      cache_write: 3.75
    - model: gpt-4o-mini
      input: 0.15
      output: 0.6
`,
      'team.yaml',
    );
    expect(p.usage?.apis).toEqual([
      { line: 7, host: 'llm.internal.example', api: 'openai', paths: ['/v1/chat/completions', '/v1/responses'] },
      { line: 9, host: 'gw.example', api: 'anthropic', paths: ['/anthropic/v1/messages'] },
    ]);
    expect(p.usage?.pricing[1]).toEqual({ line: 18, model: 'gpt-4o-mini', input: 0.15, output: 0.6, cacheRead: 0.15, cacheWrite: 0.15 });
    expect(Object.isFrozen(p.usage)).toBe(true);
    const price = priceFor(p.usage!.pricing, 'claude-sonnet-4-5-20250929');
    expect(price?.model).toBe('claude-sonnet-4*');
    expect(priceFor(p.usage!.pricing, 'claude-opus-4')).toBeNull();
    expect(costOf(price!, { input_tokens: 1_000_000, output_tokens: 1_000_000, cache_read_tokens: 1_000_000, cache_write_tokens: 1_000_000 })).toBe(22.05);
  });

  it('a policy without usage: has none, and keeps the digest it had', () => {
    const p = parsePolicy(BASE, 'a.yaml');
    expect(p.usage).toBeUndefined();
    expect('usage' in p).toBe(false);
    // The digest is over the parsed meaning; a usage: section changes it.
    const priced = parsePolicy(`${BASE}usage:\n  pricing: [{ model: m, input: 1, output: 2 }]\n`, 'a.yaml');
    expect(priced.digest).not.toBe(p.digest);
  });

  it.each([
    ['usage:\n  pricng: []\n', 6, 'usage.pricng', /unknown key "pricng" \(did you mean "pricing"\?\)/],
    ['usage:\n  apis:\n    - host: x.example\n      api: gemini\n', 8, 'usage.apis[0].api', /"gemini" is not an API this reads.*api: anthropic or api: openai/],
    ['usage:\n  apis:\n    - host: "*.corp.example"\n      api: openai\n', 7, 'usage.apis[0].host', /is not an exact host name/],
    ['usage:\n  apis:\n    - api: openai\n', 7, 'usage.apis[0].host', /is missing/],
    ['usage:\n  apis:\n    - host: x.example\n      api: openai\n      paths: ["v1/x"]\n', 9, 'usage.apis[0].paths', /"v1\/x" is not an exact path/],
    ['usage:\n  pricing:\n    - model: gpt-4o\n      input: -1\n      output: 1\n', 8, 'usage.pricing[0].input', /-1 is not a price/],
    ['usage:\n  pricing:\n    - model: gpt-4o\n      input: "3$"\n      output: 1\n', 8, 'usage.pricing[0].input', /"3\$" is not a price/],
    ['usage:\n  pricing:\n    - model: gpt-4o\n      input: 1\n', 7, 'usage.pricing[0].output', /is missing/],
    ['usage:\n  pricing:\n    - model: gpt-4o\n      input: 1\n      output: 1\n      cached: 1\n', 10, 'usage.pricing[0].cached', /unknown key "cached"/],
    ['usage:\n  pricing:\n    - model: "has space"\n      input: 1\n      output: 1\n', 7, 'usage.pricing[0].model', /is not a model name/],
  ])('%j is refused at line %i, field %s', (section, line, field, problem) => {
    const err = errorOf(BASE + section);
    expect(err.file).toBe('team.yaml');
    expect(err.line).toBe(line);
    expect(err.field).toBe(field);
    expect(err.message).toMatch(problem);
    expect(err.message.startsWith(`team.yaml:${line}: ${field}: `)).toBe(true);
  });

  it('airlock policy check shows the section, and names file, line and field of a typo', async () => {
    const dir = tmpDir('airlock-usage-check-');
    const good = join(dir, 'good.yaml');
    writeFileSync(good, `${BASE}usage:\n  apis:\n    - { host: gw.example, api: openai }\n  pricing:\n    - { model: "gpt-4o*", input: 2.5, output: 10, cache_read: 1.25 }\n`);
    const ok = await runCli(['policy', 'check', good]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain('  usage: gw.example read as the openai API on POST /v1/chat/completions /v1/responses\n');
    expect(ok.stdout).toContain('  price gpt-4o*: $ per million tokens input 2.5, output 10, cache read 1.25, cache write 2.5\n');
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, `${BASE}usage:\n  pricing:\n    - { model: "gpt-4o*", input: 2.5, outptu: 10 }\n`);
    const r = await runCli(['policy', 'check', bad]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`${bad}:7: usage.pricing[0].outptu: unknown key "outptu" (did you mean "output"?)`);
    rmTmp(dir);
  });
});
