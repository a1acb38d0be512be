// `airlock policy check`: exit codes and messages an operator sees.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT, rmTmp, runCli, tmpDir } from '../helpers/servers.js';

let dir: string;
beforeAll(() => {
  dir = tmpDir();
});
afterAll(() => rmTmp(dir));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

describe.concurrent('airlock policy check', () => {
  it('a git rule: its summary says what git may do, and an error names line and field', async () => {
    const path = file(
      'git.yaml',
      ['version: 1', 'name: git', 'allow:', '  - host: github.com', '    git:', '      fetch: ["acme/*"]', '      push:', '        - repo: acme/app', '          branches: ["agent/*"]', ''].join('\n'),
    );
    const r = await runCli(['policy', 'check', path]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('  allow github.com: ports 80,443; git smart HTTP only; fetch acme/*; push acme/app: branch agent/* (create, fast-forward only, no delete)\n');
    const bad = file('git-bad.yaml', ['version: 1', 'name: git', 'allow:', '  - host: github.com', '    git:', '      push:', '        - repo: acme/app', '          branches: ["agent/*"]', '          forse: true', ''].join('\n'));
    const e = await runCli(['policy', 'check', bad]);
    expect(e.code).not.toBe(0);
    expect(e.stderr).toContain(`${bad}:9: allow[0].git.push[0].forse: unknown key "forse" (did you mean "force"?)`);
  });

  it('an mcp: rule: its summary names the tools, and an error names line and field', async () => {
    const path = file('mcp.yaml', ['version: 1', 'name: mcp', 'allow:', '  - host: mcp.example.com', '    mcp:', '      tools: ["search_*", read_file]', ''].join('\n'));
    const r = await runCli(['policy', 'check', path]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('  allow mcp.example.com: any method; ports 80,443; any path; inspected; MCP tools search_* read_file (tools/call and tools/list checked)\n');
    const bad = file('mcp-bad.yaml', ['version: 1', 'name: mcp', 'allow:', '  - host: mcp.example.com', '    mcp:', '      tols: [read_file]', ''].join('\n'));
    const e = await runCli(['policy', 'check', bad]);
    expect(e.code).not.toBe(0);
    expect(e.stderr).toContain(`${bad}:6: allow[0].mcp.tols: unknown key "tols" (did you mean "tools"?)`);
  });

  it('a good file: exit 0 and a summary of every rule', async () => {
    const path = file(
      'good.yaml',
      [
        'version: 1',
        'name: good',
        'allow:',
        '  - host: api.github.com',
        '  - host: registry.npmjs.org',
        '    methods: [GET, HEAD]',
        '  - host: uploads.example.com',
        '    ports: [443]',
        '    paths: ["/v1/*"]',
        '  - host: pinned.example.com',
        '    inspect: false',
        '',
      ].join('\n'),
    );
    const r = await runCli(['policy', 'check', path]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(
      [
        `${path}: policy "good" is valid (version 1, mode enforce)`,
        '  allow api.github.com: any method; ports 80,443; any path; inspected',
        '  allow registry.npmjs.org: methods GET,HEAD; ports 80,443; any path; inspected',
        '  allow uploads.example.com: any method; ports 443; paths /v1/*; inspected',
        '  allow pinned.example.com: any method; ports 80,443; any path; tunnelled (not inspected)',
        '',
      ].join('\n'),
    );
  }, 30_000);

  it('an empty allow list says that everything is denied', async () => {
    const r = await runCli(['policy', 'check', file('empty.yaml', 'version: 1\nname: empty\nallow: []\n')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('(no allow rules: every request is denied)');
  }, 30_000);

  it('a bad key: exit 2, stderr names file and line and suggests the fix', async () => {
    const path = file('typo.yaml', 'version: 1\nname: typo\nallow:\n  - host: api.github.com\n    method: [GET]\n');
    const r = await runCli(['policy', 'check', path]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(new RegExp(`^airlock: ${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:5: allow\\[0\\]\\.method: unknown key "method"`));
    expect(r.stderr).toContain('did you mean "methods"');
  }, 30_000);

  it('a YAML syntax error: exit 2 with file:line', async () => {
    const path = file('syntax.yaml', 'version: 1\nname: syntax\nallow:\n  - host: api.github.com\n   methods: [GET\n');
    const r = await runCli(['policy', 'check', path]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(new RegExp(`${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+: yaml: YAML syntax error`));
  }, 30_000);

  it('a bad value: exit 2 naming the field', async () => {
    const path = file('port.yaml', 'version: 1\nname: port\nallow:\n  - host: api.github.com\n    ports: [70000]\n');
    const r = await runCli(['policy', 'check', path]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${path}:5: allow[0].ports`);
  }, 30_000);

  it('a missing file: exit 2', async () => {
    const r = await runCli(['policy', 'check', join(dir, 'nope.yaml')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`cannot read policy ${join(dir, 'nope.yaml')}: ENOENT`);
  }, 30_000);

  it('the shipped policies are all valid', async () => {
    const files = ['policies/default.yaml', ...readdirSync(join(REPO_ROOT, 'policies/examples')).map((f) => `policies/examples/${f}`)];
    const results = await Promise.all(files.map((f) => runCli(['policy', 'check', f], { cwd: REPO_ROOT })));
    results.forEach((r, i) => expect(r.code, `${files[i]}: ${r.stderr}`).toBe(0));
  }, 60_000);
});
