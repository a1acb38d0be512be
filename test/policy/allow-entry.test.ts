// `airlock run --allow HOST[:PORT]` entries and `--compat` names, checked without Docker.
import { describe, expect, it } from 'vitest';
import { COMPAT_PROFILES, compatProfile, parseAllowEntry } from '../../src/policy/index.js';

describe('parseAllowEntry', () => {
  it('takes a host, a wildcard domain or an IP, with an optional port', () => {
    expect(parseAllowEntry('api.github.com')).toEqual({ ok: true, host: 'api.github.com', port: null });
    expect(parseAllowEntry('API.GitHub.com.')).toEqual({ ok: true, host: 'api.github.com', port: null });
    expect(parseAllowEntry('*.githubusercontent.com')).toEqual({ ok: true, host: '*.githubusercontent.com', port: null });
    expect(parseAllowEntry('registry.example.com:8443')).toEqual({ ok: true, host: 'registry.example.com', port: 8443 });
    expect(parseAllowEntry('10.0.0.5:1')).toEqual({ ok: true, host: '10.0.0.5', port: 1 });
    expect(parseAllowEntry('[2001:db8::1]:65535')).toMatchObject({ ok: true, port: 65535 });
    expect(parseAllowEntry('2001:db8::1')).toMatchObject({ ok: true, port: null });
  });

  it('refuses a URL, naming the host to give instead', () => {
    const r = parseAllowEntry('https://user@api.github.com/repos?x=1');
    expect(r).toMatchObject({ ok: false, problem: '"https://user@api.github.com/repos?x=1" is a URL, not a host' });
    expect(!r.ok && r.hint).toBe('Give only the host (and a port if not 80 or 443): --allow api.github.com');
  });

  it('refuses a port out of range or not a number', () => {
    for (const bad of ['example.com:0', 'example.com:65536', 'example.com:99999999999999999999', '[::1]:70000']) {
      const r = parseAllowEntry(bad);
      expect(r.ok, bad).toBe(false);
      expect(!r.ok && r.problem, bad).toMatch(/port \d+ is out of range/);
      expect(!r.ok && r.hint).toMatch(/from 1 to 65535/);
    }
    expect(parseAllowEntry('example.com:https')).toMatchObject({ ok: false, problem: '"example.com:https": what follows ":" is not a port' });
  });

  it('refuses a wildcard over everything or over a top-level domain, and other wildcards', () => {
    expect(parseAllowEntry('*')).toMatchObject({ ok: false, problem: '"*" would allow every host' });
    expect(parseAllowEntry('*.com')).toMatchObject({ ok: false, problem: '"*.com" would allow every host under the top-level domain "com"' });
    expect(parseAllowEntry('*.com:443')).toMatchObject({ ok: false, problem: '"*.com" would allow every host under the top-level domain "com"' });
    expect(parseAllowEntry('a.*.com')).toMatchObject({ ok: false, problem: '"a.*.com" is not a supported wildcard' });
    expect(parseAllowEntry('example.com/path')).toMatchObject({ ok: false, problem: '"example.com/path" includes a path' });
  });
});

describe('compatProfile', () => {
  it('knows clauderon: its CA path and placeholder values', () => {
    const r = compatProfile('clauderon');
    expect(r.ok && r.value.caPaths).toEqual(['/etc/clauderon/proxy-ca.pem']);
    expect(r.ok && r.value.credentials.github).toEqual({ env: ['GH_TOKEN', 'GITHUB_TOKEN'], placeholder: 'clauderon-proxy' });
    expect(r.ok && r.value.credentials['anthropic-oauth']?.placeholder).toBe('sk-ant-oat01-clauderon-proxy-placeholder');
    expect(r.ok && r.value.credentials.openai).toEqual({ env: ['OPENAI_API_KEY', 'CODEX_API_KEY'], placeholder: 'sk-openai-clauderon-proxy-placeholder' });
  });

  it('lists the known names for an unknown one (and does not take inherited names)', () => {
    for (const name of ['cloche-ng', 'toString', '__proto__']) {
      expect(compatProfile(name)).toEqual({ ok: false, problem: `${JSON.stringify(name)} is not a known convention; known: ${Object.keys(COMPAT_PROFILES).join(', ')}` });
    }
  });
});
