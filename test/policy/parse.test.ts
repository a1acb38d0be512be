import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parsePolicy, PolicyError, type Policy } from '../../src/policy/index.js';

const FILE = 'policies/test.yaml';

const FULL = `version: 1
name: github-dev
mode: report
allow:
  - host: API.GitHub.com.
  - host: "*.githubusercontent.com"
  - host: registry.npmjs.org
    methods: [get, HEAD, GET]
  - host: uploads.example.com
    ports: [443, 8443]
    paths: ["/v1/*"]
  - host: pinned.example.com
    inspect: false
  - host: 10.0.0.5
  - host: bücher.example
credentials:
  - name: github
    env: [GH_TOKEN, GITHUB_TOKEN]
    placeholder: ghp_airlockPlaceholder0000000000000000
    secret: { env: AIRLOCK_GITHUB_TOKEN }
    hosts: [api.github.com, github.com, "*.githubusercontent.com"]
    in: [header, basic, body]
    body: { types: [Application/JSON, application/x-www-form-urlencoded], max_bytes: 4096 }
  - preset: anthropic
    secret: { file: /run/secrets/anthropic }
  - preset: openai
    name: openai-work
    env: [OPENAI_KEY]
    secret: { command: [op, read, "op://dev/openai/key"], ttl_seconds: 60 }
  - preset: anthropic-oauth
    secret: { command: [print-token] }
limits:
  max_upload_bytes: 1048576
`;

describe('parsePolicy: valid input', () => {
  const p = parsePolicy(FULL, FILE);

  it('reads every field', () => {
    expect(p).toMatchObject({ version: 1, name: 'github-dev', source: FILE, mode: 'report', limits: { maxUploadBytes: 1048576 } });
    expect(p.allow.map((r) => [r.label, r.kind, r.line])).toEqual([
      ['allow[0] api.github.com', 'exact', 5],
      ['allow[1] *.githubusercontent.com', 'wildcard', 6],
      ['allow[2] registry.npmjs.org', 'exact', 7],
      ['allow[3] uploads.example.com', 'exact', 9],
      ['allow[4] pinned.example.com', 'exact', 12],
      ['allow[5] 10.0.0.5', 'ip', 14],
      ['allow[6] xn--bcher-kva.example', 'exact', 15],
    ]);
    expect(p.allow[0]).toEqual({
      index: 0,
      line: 5,
      host: 'api.github.com',
      kind: 'exact',
      methods: null,
      ports: [80, 443],
      paths: null,
      inspect: true,
      label: 'allow[0] api.github.com',
      git: null,
      github: null,
      mcp: null,
    });
    expect(p.allow[2]?.methods).toEqual(['GET', 'HEAD']);
    expect(p.allow[3]).toMatchObject({ ports: [443, 8443], paths: ['/v1/*'] });
    expect(p.allow[4]?.inspect).toBe(false);
  });

  it('reads credentials, filling presets', () => {
    expect(p.credentials).toEqual([
      {
        name: 'github',
        line: 17,
        env: ['GH_TOKEN', 'GITHUB_TOKEN'],
        placeholder: 'ghp_airlockPlaceholder0000000000000000',
        secret: { kind: 'env', name: 'AIRLOCK_GITHUB_TOKEN' },
        hosts: ['api.github.com', 'github.com', '*.githubusercontent.com'],
        in: ['header', 'basic', 'body'],
        headers: ['authorization'],
        body: { types: ['application/json', 'application/x-www-form-urlencoded'], maxBytes: 4096 },
      },
      {
        name: 'anthropic',
        line: 24,
        env: ['ANTHROPIC_API_KEY'],
        placeholder: null,
        secret: { kind: 'file', path: '/run/secrets/anthropic' },
        hosts: ['api.anthropic.com'],
        in: ['header'],
        headers: ['x-api-key', 'authorization'],
        body: null,
      },
      {
        name: 'openai-work',
        line: 26,
        env: ['OPENAI_KEY'],
        placeholder: null,
        secret: { kind: 'command', argv: ['op', 'read', 'op://dev/openai/key'], ttlSeconds: 60 },
        hosts: ['api.openai.com'],
        in: ['header'],
        headers: ['authorization'],
        body: null,
      },
      {
        name: 'anthropic-oauth',
        line: 30,
        env: ['CLAUDE_CODE_OAUTH_TOKEN'],
        placeholder: null,
        secret: { kind: 'command', argv: ['print-token'], ttlSeconds: 300 },
        hosts: ['api.anthropic.com', 'mcp-proxy.anthropic.com'],
        in: ['header'],
        headers: ['authorization'],
        body: null,
      },
    ]);
  });

  it('is deeply frozen', () => {
    const frozen = (x: unknown) => expect(Object.isFrozen(x)).toBe(true);
    frozen(p);
    frozen(p.allow);
    frozen(p.limits);
    frozen(p.credentials);
    for (const rule of p.allow) {
      frozen(rule);
      frozen(rule.ports);
      if (rule.methods) frozen(rule.methods);
      if (rule.paths) frozen(rule.paths);
    }
    for (const c of p.credentials) {
      frozen(c);
      frozen(c.env);
      frozen(c.hosts);
      frozen(c.in);
      frozen(c.secret);
      if (c.secret.kind === 'command') frozen(c.secret.argv);
      if (c.body) {
        frozen(c.body);
        frozen(c.body.types);
      }
    }
    expect(() => {
      (p.allow as unknown as unknown[]).push({});
    }).toThrow();
  });

  it('is stable: parsing twice gives equal policies', () => {
    expect(parsePolicy(FULL, FILE)).toEqual(p);
  });

  it('names its version by what it means: comments, layout and file name keep the digest, a change of meaning changes it', () => {
    const base = parsePolicy('version: 1\nname: d\nallow:\n  - host: a.example\n', FILE);
    const relaid = parsePolicy('# the team\'s policy\nversion: 1\n\nname: d   # named\nallow: [{ host: a.example }]\n', 'other.yaml');
    expect(relaid.digest).toBe(base.digest);
    expect(parsePolicy('version: 1\nname: d\nallow:\n  - host: a.example\n    methods: [GET]\n', FILE).digest).not.toBe(base.digest);
    expect(parsePolicy('version: 1\nname: d\nallow:\n  - host: b.example\n', FILE).digest).not.toBe(base.digest);
  });

  it('applies defaults', () => {
    const minimal = parsePolicy('version: 1\nname: minimal\n', FILE);
    expect(minimal).toEqual({
      version: 1,
      name: 'minimal',
      digest: expect.stringMatching(/^[0-9a-f]{12}$/),
      source: FILE,
      mode: 'enforce',
      allow: [],
      credentials: [],
      limits: { maxUploadBytes: null, maxConnections: null, requestsPerSecond: null },
      container: { pids: null, memoryBytes: null, cpus: null },
    });
    // every entry commented out leaves an empty key: nothing is allowed
    const commented = parsePolicy('version: 1\nname: c\nallow:\n  # - host: x.com\ncredentials:\n', FILE);
    expect(commented.allow).toEqual([]);
    expect(commented.credentials).toEqual([]);
  });

  it('accepts IPv6 rules', () => {
    const v6 = parsePolicy('version: 1\nname: v6\nallow:\n  - host: "[2001:DB8::1]"\n  - host: "::1"\n', FILE);
    expect(v6.allow.map((r) => [r.host, r.kind])).toEqual([
      ['2001:db8::1', 'ip'],
      ['::1', 'ip'],
    ]);
  });
});

/** Parses `text` expecting a PolicyError at `line` naming `field`. */
function expectError(text: string, line: number | null, field: string, also?: RegExp): PolicyError {
  let caught: unknown;
  try {
    parsePolicy(text, FILE);
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(PolicyError);
  const err = caught as PolicyError;
  expect(err.file).toBe(FILE);
  expect(err.line).toBe(line);
  expect(err.field).toBe(field);
  expect(err.message).toContain(FILE);
  expect(err.message).toContain(line === null ? `${FILE}: ` : `${FILE}:${line}: `);
  expect(err.message).toContain(`: ${field}: `);
  if (also) expect(err.message).toMatch(also);
  return err;
}

const HEAD = 'version: 1\nname: t\n'; // lines 1-2

describe('parsePolicy: errors', () => {
  it('formats messages as file:line: field: problem. hint', () => {
    const err = expectError(`${HEAD}allow:\n  - host: a.com\n  - host: x.com\n    ports: [443, http]\n`, 6, 'allow[1].ports');
    expect(err.message).toBe(
      'policies/test.yaml:6: allow[1].ports: "http" is not a port number. Use integers 1-65535, e.g. ports: [443, 8443]; leave ports out for the default [80, 443]',
    );
  });

  const cases: Array<[name: string, text: string, line: number | null, field: string, also?: RegExp]> = [
    ['unknown key typo in a rule', `${HEAD}allow:\n  - host: registry.npmjs.org\n    method: [GET]\n`, 5, 'allow[0].method', /unknown key "method" \(did you mean "methods"\?\).*host, methods, ports, paths, inspect/],
    ['unknown top-level key', `${HEAD}alow:\n  - host: a.com\n`, 3, 'alow', /did you mean "allow"/],
    ['unknown credential key', `${HEAD}credentials:\n  - preset: github\n    secret: { env: A }\n    header: x\n`, 6, 'credentials[0].header', /Allowed keys/],
    ['unknown secret key', `${HEAD}credentials:\n  - preset: github\n    secret: { environment: A }\n`, 5, 'credentials[0].secret.environment', /env, file, command, ttl_seconds/],
    ['port out of range', `${HEAD}allow:\n  - host: a.com\n    ports: [70000]\n`, 5, 'allow[0].ports', /70000 is not a port number/],
    ['port as a block list item', `${HEAD}allow:\n  - host: a.com\n    ports:\n      - 443\n      - 0\n`, 7, 'allow[0].ports'],
    ['ports not a list', `${HEAD}allow:\n  - host: a.com\n    ports: 443\n`, 5, 'allow[0].ports', /must be a list/],
    ['empty ports', `${HEAD}allow:\n  - host: a.com\n    ports: []\n`, 5, 'allow[0].ports', /empty list/],
    ['methods with no value', `${HEAD}allow:\n  - host: a.com\n    methods:\n`, 5, 'allow[0].methods', /has no value/],
    ['bad method', `${HEAD}allow:\n  - host: a.com\n    methods: ["GET /"]\n`, 5, 'allow[0].methods', /not an HTTP method/],
    ['path without slash', `${HEAD}allow:\n  - host: a.com\n    paths: ["v1/*"]\n`, 5, 'allow[0].paths', /start with "\/"/],
    ['inspect not boolean', `${HEAD}allow:\n  - host: a.com\n    inspect: no\n`, 5, 'allow[0].inspect', /"no" is not true or false/],
    ['inspect false with methods', `${HEAD}allow:\n  - host: a.com\n    inspect: false\n    methods: [GET]\n`, 6, 'allow[0].methods', /need inspection/],
    ['inspect false with paths', `${HEAD}allow:\n  - host: a.com\n    paths: ["/x"]\n    inspect: false\n`, 5, 'allow[0].paths', /need inspection/],
    ['missing host', `${HEAD}allow:\n  - ports: [443]\n`, 4, 'allow[0].host', /is missing/],
    ['rule not a map', `${HEAD}allow:\n  - a.com\n`, 4, 'allow[0]', /must be a map/],
    ['allow not a list', `${HEAD}allow: a.com\n`, 3, 'allow', /must be a list/],
    ['wildcard alone', `${HEAD}allow:\n  - host: a.com\n  - host: "*"\n`, 5, 'allow[1].host', /every host/],
    ['wildcard in the middle', `${HEAD}allow:\n  - host: "a.*.com"\n`, 4, 'allow[0].host', /not a supported wildcard.*leading "\*\."/],
    ['wildcard without dot', `${HEAD}allow:\n  - host: "*foo.com"\n`, 4, 'allow[0].host', /not a supported wildcard/],
    ['double wildcard', `${HEAD}allow:\n  - host: "*.*.com"\n`, 4, 'allow[0].host', /not a supported wildcard/],
    ['wildcard on an IP', `${HEAD}allow:\n  - host: "*.0.0.1"\n`, 4, 'allow[0].host'],
    ['wildcard on a top-level domain', `${HEAD}allow:\n  - host: "*.com"\n`, 4, 'allow[0].host', /every host under the top-level domain "com"/],
    ['unquoted wildcard (a YAML alias)', `${HEAD}allow:\n  - host: *.example.com\n`, 4, 'allow[0].host', /Quote values that start with "\*"/],
    ['host with a port', `${HEAD}allow:\n  - host: a.com:8443\n`, 4, 'allow[0].host', /includes a port.*ports: \[8443\]/],
    ['host as URL', `${HEAD}allow:\n  - host: https://a.com/x\n`, 4, 'allow[0].host', /is a URL/],
    ['host with a path', `${HEAD}allow:\n  - host: a.com/x\n`, 4, 'allow[0].host', /includes a path/],
    ['invalid host', `${HEAD}allow:\n  - host: a..com\n`, 4, 'allow[0].host', /not a valid host name/],
    ['host not text', `${HEAD}allow:\n  - host: 12\n`, 4, 'allow[0].host', /must be text/],
    ['bad version', 'name: t\nversion: 2\n', 2, 'version', /2 is not a supported version.*version: 1/],
    ['version as text', 'version: "1"\nname: t\n', 1, 'version', /"1" is not a supported version/],
    ['missing version', 'name: t\n', 1, 'version', /is missing/],
    ['version checked before unknown keys', 'version: 2\nname: t\nfuture_key: 1\n', 1, 'version'],
    ['missing name', 'version: 1\n', 1, 'name', /is missing/],
    ['bad name', 'version: 1\nname: "has space"\n', 2, 'name', /not a valid policy name/],
    ['bad mode', `${HEAD}mode: audit\n`, 3, 'mode', /enforce.*report/],
    ['empty file', '', 1, 'policy', /empty/],
    ['list at top level', '- version: 1\n', 1, 'policy', /must hold a map/],
    ['bad limit', `${HEAD}limits:\n  max_upload_bytes: 0\n`, 4, 'limits.max_upload_bytes', /0 is not an integer from 1/],
    ['unknown limit', `${HEAD}limits:\n  max_upload: 5\n`, 4, 'limits.max_upload', /did you mean "max_upload_bytes"/],
    // credentials
    ['missing secret', `${HEAD}credentials:\n  - preset: github\n    env: [GH_TOKEN]\n`, 4, 'credentials[0].secret', /is missing.*env: NAME/],
    ['empty secret', `${HEAD}credentials:\n  - preset: github\n    secret: {}\n`, 5, 'credentials[0].secret', /names no source/],
    ['two secret sources', `${HEAD}credentials:\n  - preset: github\n    secret: { env: A, file: /x }\n`, 5, 'credentials[0].secret', /both env and file/],
    ['ttl without command', `${HEAD}credentials:\n  - preset: github\n    secret:\n      env: A\n      ttl_seconds: 5\n`, 7, 'credentials[0].secret.ttl_seconds'],
    ['command as a string', `${HEAD}credentials:\n  - preset: github\n    secret: { command: "op read x" }\n`, 5, 'credentials[0].secret.command', /without a shell/],
    ['bad secret env name', `${HEAD}credentials:\n  - preset: github\n    secret: { env: 1A }\n`, 5, 'credentials[0].secret.env'],
    ['unknown preset', `${HEAD}credentials:\n  - preset: gitlab\n    secret: { env: A }\n`, 4, 'credentials[0].preset', /unknown preset "gitlab".*github, anthropic, anthropic-oauth, claude-login, vertex, openai, npm/],
    ['prototype key is not a preset', `${HEAD}credentials:\n  - preset: constructor\n    secret: { env: A }\n`, 4, 'credentials[0].preset', /unknown preset/],
    ['missing name without preset', `${HEAD}credentials:\n  - env: [A]\n    secret: { env: B }\n    hosts: [a.com]\n`, 4, 'credentials[0].name', /is missing/],
    ['missing env without preset', `${HEAD}credentials:\n  - name: a\n    secret: { env: B }\n    hosts: [a.com]\n`, 4, 'credentials[0].env', /is missing/],
    ['missing hosts without preset', `${HEAD}credentials:\n  - name: a\n    env: [A]\n    secret: { env: B }\n`, 4, 'credentials[0].hosts', /is missing/],
    ['bad credential name', `${HEAD}credentials:\n  - name: GitHub\n    preset: github\n    secret: { env: B }\n`, 4, 'credentials[0].name'],
    ['bad env name', `${HEAD}credentials:\n  - preset: github\n    env: [GH-TOKEN]\n    secret: { env: B }\n`, 5, 'credentials[0].env', /"GH-TOKEN" is not an env var name/],
    ['empty env list', `${HEAD}credentials:\n  - preset: github\n    env: []\n    secret: { env: B }\n`, 5, 'credentials[0].env', /empty list/],
    ['short placeholder', `${HEAD}credentials:\n  - preset: github\n    placeholder: short\n    secret: { env: B }\n`, 5, 'credentials[0].placeholder', /at least 12/],
    ['bad in', `${HEAD}credentials:\n  - preset: github\n    in: [cookie]\n    secret: { env: B }\n`, 5, 'credentials[0].in', /header, basic, query, body/],
    ['bad credential host', `${HEAD}credentials:\n  - preset: github\n    hosts: ["a.*.com"]\n    secret: { env: B }\n`, 5, 'credentials[0].hosts', /wildcard/],
    ['body without in:body', `${HEAD}credentials:\n  - preset: github\n    secret: { env: B }\n    body: { types: [application/json] }\n`, 6, 'credentials[0].body', /only used when in: contains body/],
    ['in:body without body', `${HEAD}credentials:\n  - preset: github\n    secret: { env: B }\n    in: [header, body]\n`, 6, 'credentials[0].in', /no body: section/],
    ['bad body type', `${HEAD}credentials:\n  - preset: github\n    secret: { env: B }\n    in: [body]\n    body: { types: [json] }\n`, 7, 'credentials[0].body.types', /not a media type/],
    ['duplicate credential name', `${HEAD}credentials:\n  - preset: github\n    secret: { env: A }\n  - preset: github\n    env: [OTHER]\n    secret: { env: B }\n`, 6, 'credentials[1].name', /already used by credentials\[0\]/],
    ['shared env var', `${HEAD}credentials:\n  - preset: github\n    secret: { env: A }\n  - name: other\n    env: [X, GITHUB_TOKEN]\n    hosts: [a.com]\n    secret: { env: B }\n`, 7, 'credentials[1].env', /GITHUB_TOKEN is already used by credentials\[0\]/],
    ['credentials not a list', `${HEAD}credentials: github\n`, 3, 'credentials', /must be a list/],
    // YAML syntax
    ['yaml syntax error', `${HEAD}allow:\n  - host: a.com\n   ports: [443\n`, 5, 'yaml', /YAML syntax error/],
    ['unclosed flow list', `${HEAD}allow:\n  - host: a.com\n    ports: [443\n`, 6, 'yaml', /YAML syntax error/],
    ['duplicate key', `${HEAD}name: u\n`, 3, 'yaml', /unique/],
    ['tab indentation', `${HEAD}allow:\n\t- host: a.com\n`, 4, 'yaml', /spaces, not tabs/],
    ['two documents', `${HEAD}---\nname: u\n`, 3, 'yaml', /more than one YAML document/],
  ];

  it.each(cases)('%s', (_name, text, line, field, also) => {
    expectError(text, line, field, also);
  });
});

describe('shipped policies', () => {
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
  const files = listYaml(join(root, 'policies'));

  it('exist', () => {
    expect(files.map((f) => relative(root, f)).sort()).toEqual(
      expect.arrayContaining([
        'policies/default.yaml',
        'policies/examples/claude-code.yaml',
        'policies/examples/github-dev.yaml',
        'policies/examples/npm-readonly.yaml',
        'policies/examples/report-mode.yaml',
      ]),
    );
  });

  it.each(files.map((f) => [relative(root, f), f]))('%s parses', (name, file) => {
    const policy: Policy = parsePolicy(readFileSync(file, 'utf8'), name);
    expect(policy.source).toBe(name);
    expect(policy.version).toBe(1);
  });
});

function listYaml(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) return listYaml(path);
    return /\.ya?ml$/.test(entry) ? [path] : [];
  });
}
