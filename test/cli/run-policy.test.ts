// The policy `airlock run` builds from --policy, --allow and --compat: one YAML text (what a daemon
// is sent), the file's own comments kept, its errors reported at its own lines.
import { afterAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadRunPolicy, UsageError } from '../../src/cli/config.js';
import { COMPAT_PROFILES, parsePolicy } from '../../src/policy/index.js';
import { rmTmp, tmpDir } from '../helpers/servers.js';

const dir = tmpDir('airlock-run-policy-');
afterAll(() => rmTmp(dir));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

describe('loadRunPolicy', () => {
  it('adds a rule per --allow to the file, keeping its comments; the text parses to the same policy', () => {
    const path = file('p.yaml', '# company policy\nversion: 1\nname: p\nallow:\n  - host: api.github.com # the API\n');
    const { policy, text } = loadRunPolicy(path, ['registry.npmjs.org', '*.githubusercontent.com', 'uploads.example.test:8443'], undefined);
    expect(text).toContain('# company policy');
    expect(text).toContain('# the API');
    expect(policy.allow.map((r) => [r.host, r.ports])).toEqual([
      ['api.github.com', [80, 443]],
      ['registry.npmjs.org', [80, 443]],
      ['*.githubusercontent.com', [80, 443]],
      ['uploads.example.test', [8443]],
    ]);
    expect(parsePolicy(text, path)).toEqual(policy);
  });

  it('needs no file: --allow alone makes a policy that allows only those hosts', () => {
    const { policy } = loadRunPolicy(undefined, ['api.github.com'], undefined);
    expect(policy.allow.map((r) => r.host)).toEqual(['api.github.com']);
    expect(policy.credentials).toEqual([]);
    expect(policy.mode).toBe('enforce');
    expect(() => loadRunPolicy(undefined, [], undefined)).toThrow(UsageError);
  });

  it('with an empty allow: in the file, and errors in the file at its own lines', () => {
    const empty = file('empty.yaml', 'version: 1\nname: e\nallow:\n');
    expect(loadRunPolicy(empty, ['api.github.com'], undefined).policy.allow.map((r) => r.host)).toEqual(['api.github.com']);
    const broken = file('broken.yaml', 'version: 1\nname: b\nallow:\n  - host: "*.com"\n');
    expect(() => loadRunPolicy(broken, ['api.github.com'], undefined)).toThrow(/broken\.yaml:4/);
  });

  it("--compat clauderon sets Clauderon's placeholders and variables where the policy sets none", () => {
    const path = file(
      'c.yaml',
      [
        'version: 1', 'name: c', 'allow:', '  - host: api.github.com', 'credentials:',
        '  - preset: github', '    secret: { env: A }',
        '  - preset: openai', '    secret: { env: B }',
        '  - preset: anthropic-oauth', '    placeholder: sk-ant-oat01-mine-000000', '    secret: { env: C }',
        '  - preset: npm', '    secret: { env: D }', '',
      ].join('\n'),
    );
    const { policy } = loadRunPolicy(path, [], COMPAT_PROFILES.clauderon);
    const byName = Object.fromEntries(policy.credentials.map((c) => [c.name, { env: c.env, placeholder: c.placeholder }]));
    expect(byName.github).toEqual({ env: ['GH_TOKEN', 'GITHUB_TOKEN'], placeholder: 'clauderon-proxy' });
    expect(byName.openai).toEqual({ env: ['OPENAI_API_KEY', 'CODEX_API_KEY'], placeholder: 'sk-openai-clauderon-proxy-placeholder' });
    expect(byName['anthropic-oauth']).toEqual({ env: ['CLAUDE_CODE_OAUTH_TOKEN'], placeholder: 'sk-ant-oat01-mine-000000' });
    expect(byName.npm).toEqual({ env: ['NPM_TOKEN'], placeholder: null });
  });
});
