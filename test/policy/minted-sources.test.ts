// The github_app: and aws: secret sources in a policy: what they read, and errors that name file,
// line and field.
import { describe, expect, it } from 'vitest';
import { parsePolicy, PolicyError } from '../../src/policy/index.js';

const FILE = 'policies/test.yaml';
const HEAD = 'version: 1\nname: t\ncredentials:\n  - preset: github-app\n'; // lines 1-4

function expectError(text: string, line: number, field: string, also: RegExp): void {
  let err: unknown;
  try {
    parsePolicy(text, FILE);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(PolicyError);
  const e = err as PolicyError;
  expect({ line: e.line, field: e.field }).toEqual({ line, field });
  expect(e.message).toContain(`${FILE}:${line}: ${field}: `);
  expect(e.message).toMatch(also);
}

describe('github_app source', () => {
  it('reads every field, narrowing owner/name to the name', () => {
    const policy = parsePolicy(
      `${HEAD}    secret:\n      github_app:\n        app_id: 123456\n        private_key: /keys/app.pem\n        installation_id: 789\n        repositories: [octo/airlock, website, airlock]\n        permissions: { contents: write, pull_requests: read }\n        api: https://ghe.example.com/api/v3/\n`,
      FILE,
    );
    const c = policy.credentials[0]!;
    expect(c).toMatchObject({ name: 'github-app', env: ['GH_TOKEN', 'GITHUB_TOKEN'], in: ['header', 'basic'] });
    expect(c.secret).toEqual({
      kind: 'github_app',
      appId: '123456',
      privateKey: '/keys/app.pem',
      installationId: '789',
      repositories: ['airlock', 'website'],
      permissions: { contents: 'write', pull_requests: 'read' },
      api: 'https://ghe.example.com/api/v3',
    });
    expect(Object.isFrozen(c.secret)).toBe(true);
  });

  it('defaults: every repository and permission of the installation, api.github.com', () => {
    const c = parsePolicy(`${HEAD}    secret: { github_app: { app_id: Iv1.abc123, private_key: k.pem, installation_id: 1 } }\n`, FILE).credentials[0]!;
    expect(c.secret).toMatchObject({ appId: 'Iv1.abc123', repositories: [], permissions: {}, api: 'https://api.github.com' });
  });

  it.each([
    ['missing private_key', '    secret: { github_app: { app_id: 1, installation_id: 2 } }\n', 5, 'credentials[0].secret.github_app.private_key', /is missing.*\.pem/],
    ['missing installation_id', '    secret: { github_app: { app_id: 1, private_key: k.pem } }\n', 5, 'credentials[0].secret.github_app.installation_id', /is missing/],
    ['a typo in a key', '    secret: { github_app: { app_id: 1, private_key: k.pem, installation_id: 2, repos: [a] } }\n', 5, 'credentials[0].secret.github_app.repos', /did you mean "repositories"/],
    ['a permission GitHub does not have', '    secret: { github_app: { app_id: 1, private_key: k.pem, installation_id: 2, permissions: { content: write } } }\n', 5, 'credentials[0].secret.github_app.permissions.content', /did you mean "contents"/],
    ['an access level', '    secret: { github_app: { app_id: 1, private_key: k.pem, installation_id: 2, permissions: { contents: owner } } }\n', 5, 'credentials[0].secret.github_app.permissions.contents', /not read, write or admin/],
    ['a repository path', '    secret: { github_app: { app_id: 1, private_key: k.pem, installation_id: 2, repositories: [a/b/c] } }\n', 5, 'credentials[0].secret.github_app.repositories', /not a repository name/],
    ['an http api', '    secret: { github_app: { app_id: 1, private_key: k.pem, installation_id: 2, api: "http://ghe.local/api/v3" } }\n', 5, 'credentials[0].secret.github_app.api', /not an https URL/],
    ['with another source', '    secret: { env: A, github_app: { app_id: 1, private_key: k.pem, installation_id: 2 } }\n', 5, 'credentials[0].secret', /gives both env and github_app/],
  ])('%s', (_what, secret, line, field, also) => {
    expectError(HEAD + secret, line, field, also);
  });
});

describe('aws source', () => {
  const AWS_HEAD = 'version: 1\nname: t\ncredentials:\n  - preset: aws\n';
  it('reads a profile, or the environment', () => {
    const withProfile = parsePolicy(`${AWS_HEAD}    secret: { aws: { profile: bedrock } }\n`, FILE).credentials[0]!;
    expect(withProfile).toMatchObject({ name: 'aws', env: ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'], hosts: ['*.amazonaws.com'] });
    expect(withProfile.secret).toEqual({ kind: 'aws', profile: 'bedrock' });
    expect(parsePolicy(`${AWS_HEAD}    secret: { aws: {} }\n`, FILE).credentials[0]!.secret).toEqual({ kind: 'aws', profile: null });
  });

  it.each([
    ['a typo', '    secret: { aws: { profle: x } }\n', 5, 'credentials[0].secret.aws.profle', /did you mean "profile"/],
    ['a bad profile name', '    secret: { aws: { profile: "a b" } }\n', 5, 'credentials[0].secret.aws.profile', /not a profile name/],
  ])('%s', (_what, secret, line, field, also) => {
    expectError(AWS_HEAD + secret, line, field, also);
  });
});
