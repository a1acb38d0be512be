import { isIP } from 'node:net';
import { describe, expect, it } from 'vitest';
import { CREDENTIAL_PRESETS, isIpLiteral, matchHostPattern, normalizeHost } from '../../src/policy/index.js';
import { ipVersion } from '../../src/policy/hosts.js';

describe('normalizeHost', () => {
  const cases: Array<[input: string, expected: string | null]> = [
    ['api.github.com', 'api.github.com'],
    ['API.GitHub.COM', 'api.github.com'],
    ['  api.github.com  ', 'api.github.com'],
    ['api.github.com.', 'api.github.com'],
    ['bücher.example', 'xn--bcher-kva.example'],
    ['BÜCHER.example.', 'xn--bcher-kva.example'],
    ['xn--bcher-kva.example', 'xn--bcher-kva.example'],
    ['under_score.example.com', 'under_score.example.com'],
    ['-leading.example.com', '-leading.example.com'],
    ['localhost', 'localhost'],
    ['10.0.0.5', '10.0.0.5'],
    ['10.0.0.5.', '10.0.0.5'],
    ['::1', '::1'],
    ['[::1]', '::1'],
    ['[0:0:0:0:0:0:0:1]', '::1'],
    ['2001:DB8::0:1', '2001:db8::1'],
    ['[::ffff:1.2.3.4]', '::ffff:102:304'],
    // invalid
    ['', null],
    ['   ', null],
    ['.', null],
    ['api.github.com..', null],
    ['a..b.com', null],
    ['.a.com', null],
    [`${'a'.repeat(64)}.com`, null],
    [`${'a'.repeat(63)}.com`, `${'a'.repeat(63)}.com`],
    [Array.from({ length: 64 }, () => 'abc').join('.'), null], // 255 chars
    ['a/b.com', null],
    ['evil.com/x.example.com', null],
    ['user@example.com', null],
    ['example.com:443', null],
    ['exa mple.com', null],
    ['*.example.com', null],
    ['a\u0000b.com', null],
    ['[example.com]', null],
    ['[::1', null],
    ['fe80::1%eth0', null],
    ['127.1', null], // a resolver would read this as 127.0.0.1; refuse the ambiguous spelling
    ['0x7f.0.0.1', null],
    ['010.0.0.1', null],
    ['xn--zz.com', null], // invalid punycode
  ];
  it.each(cases)('%j -> %j', (input, expected) => {
    expect(normalizeHost(input)).toBe(expected);
  });
});

describe('isIpLiteral', () => {
  it.each([
    ['10.0.0.5', true],
    ['::1', true],
    ['2001:db8::1', true],
    ['example.com', false],
    ['10.0.0.5.example.com', false],
  ])('%s -> %s', (host, expected) => {
    expect(isIpLiteral(host)).toBe(expected);
  });

  // The policy's own IP check skips Node's IPv6 pattern for strings without a colon (start-up);
  // it must answer as net.isIP does for every spelling, odd ones included.
  it('answers as net.isIP for literals, names and near-misses', () => {
    const inputs = [
      '10.0.0.5', '010.0.0.5', '10.0.0', '10.0.0.256', '1.2.3.4.', ' 1.2.3.4', '0x7f.0.0.1', '127.1', '::', '::1', ':1', '1::',
      '2001:db8::1', '2001:db8::1%eth0', '::ffff:1.2.3.4', '::ffff:1.2.3', '1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8:9', 'fe80::1%',
      'a:b', ':::', 'example.com', 'localhost', '', '%eth0', '1.2.3.4%eth0', 'ffff', 'abcd::efgh', '[::1]',
    ];
    for (const s of inputs) expect(isIpLiteral(s), s).toBe(isIP(s) !== 0);
    for (const s of inputs) expect(normalizeHost(`[${s}]`) !== null, `[${s}]`).toBe(isIP(s) === 6 && !s.includes('%'));
  });

  // The same, over generated spellings: near-misses of IPv4, IPv6 (mapped, compatible, zones,
  // embedded quads) and names, one or two characters changed, and short random strings of the
  // characters that matter (digits, hex, '.', ':', '%', brackets, whitespace, full-width dot and
  // colon). Seeded, so a failure names the same string every run.
  it('answers as net.isIP for 60,000 generated spellings', () => {
    let seed = 0x2f6b1d;
    const next = (n: number) => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % n;
    };
    const chars = '0123456789abcdefABCDEFx.:%[]- gz\t\uff0e\uff1a';
    const seeds = ['::', '::1', '::ffff:127.0.0.1', '1.2.3.4', '255.255.255.255', 'fe80::1%eth0', '64:ff9b::7f00:1', '0:0:0:0:0:0:0:1', '1:2:3:4:5:6:1.2.3.4', '::7f00:1', 'a.b', 'api.github.com', 'ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255', 'fe80:0:0:0:0:0:0:1%enp0s31f6-with.a:long-zone'];
    const mismatches: string[] = [];
    for (let i = 0; i < 60_000; i++) {
      let s: string;
      if (i % 3 === 0) {
        s = '';
        for (let k = 1 + next(18); k > 0; k--) s += chars[next(chars.length)];
      } else {
        const t = [...seeds[next(seeds.length)]!];
        for (let k = 1 + (i % 2); k > 0; k--) {
          const at = next(t.length + 1);
          const op = next(3);
          if (op === 0) t.splice(at, 0, chars[next(chars.length)]!);
          else if (op === 1) t.splice(at, 1);
          else t[at] = chars[next(chars.length)]!;
        }
        s = t.join('');
      }
      if (isIpLiteral(s) !== (isIP(s) !== 0) || ipVersion(s) !== isIP(s)) mismatches.push(s);
    }
    expect(mismatches).toEqual([]);
  });
});

describe('matchHostPattern', () => {
  const cases: Array<[pattern: string, host: string, expected: boolean]> = [
    ['api.github.com', 'api.github.com', true],
    ['api.github.com', 'github.com', false],
    ['api.github.com', 'x.api.github.com', false],
    ['api.github.com', 'api.github.com.evil.com', false],
    ['*.example.com', 'a.example.com', true],
    ['*.example.com', 'a.b.example.com', true],
    ['*.example.com', 'example.com', false], // apex is not covered by the wildcard
    ['*.example.com', 'badexample.com', false], // suffix confusion
    ['*.example.com', 'a.badexample.com', false],
    ['*.example.com', '.example.com', false],
    ['*.example.com', 'example.com.evil.com', false],
    ['*.githubusercontent.com', 'raw.githubusercontent.com', true],
    ['*.githubusercontent.com', 'evilgithubusercontent.com', false],
    ['10.0.0.5', '10.0.0.5', true],
    ['10.0.0.5', '10.0.0.50', false],
    ['::1', '::1', true],
    ['*.0.0.1', '127.0.0.1', false], // wildcards never match IP literals
  ];
  it.each(cases)('%s vs %s -> %s', (pattern, host, expected) => {
    expect(matchHostPattern(pattern, host)).toBe(expected);
  });
});

describe('CREDENTIAL_PRESETS', () => {
  it('uses normalised hosts and is frozen', () => {
    for (const preset of Object.values(CREDENTIAL_PRESETS)) {
      expect(Object.isFrozen(preset)).toBe(true);
      for (const host of preset.hosts) {
        const bare = host.startsWith('*.') ? host.slice(2) : host;
        expect(normalizeHost(bare)).toBe(bare);
      }
    }
    expect(Object.isFrozen(CREDENTIAL_PRESETS)).toBe(true);
    expect(Object.keys(CREDENTIAL_PRESETS).sort()).toEqual(['anthropic', 'anthropic-oauth', 'aws', 'claude-login', 'github', 'github-app', 'npm', 'openai', 'vertex']);
  });
});
