// github: rules on the wire, with the real gh CLI against a GitHub API stand-in (HTTPS on
// loopback, as api.github.com) through an Airlock session that holds only a placeholder token:
// listed repositories work, other repositories, dangerous endpoints and unlisted GraphQL
// mutations are refused with a reason gh prints, and the stand-in never sees a refused request.
// Also from the attacker's side with hand-made requests: path tricks, method overrides,
// GraphQL bodies that hide a mutation, batches, huge and non-JSON bodies.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import type http from 'node:http';
import { createTestPki, rmTmp, runProcess, startAirlock, startHttpsUpstream, tmpDir } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import { credentialsFactory } from '../../src/credentials/sources.js';
import { httpsViaProxy } from '../helpers/clients.js';
import { secretLeaks } from '../helpers/secret-leaks.js';

const SECRET = 'ghs_GithubApiRealToken0123456789abcdefXY';
const PLACEHOLDER = 'ghp_airlockGithubApiPlaceholder0000000';

const POLICY = `version: 1
name: github-api
allow:
  - host: api.github.com
    github:
      repos: ["acme/*"]
      graphql:
        mutations: [addComment]
credentials:
  - name: github
    env: [GH_TOKEN]
    placeholder: ${PLACEHOLDER}
    secret: { env: AIRLOCK_GITHUB_TOKEN }
    hosts: [api.github.com]
    in: [header]
`;

let pki: TestPki;
let api: TestUpstream;
let airlock: AirlockHandle;
let home: string;
/** Requests the stand-in served, with whether they carried the real token. */
const served: { method: string; url: string; authorized: boolean; body: string }[] = [];

function standIn(req: http.IncomingMessage, res: http.ServerResponse): void {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const authorized = req.headers.authorization === `token ${SECRET}`;
    served.push({ method: req.method ?? '', url: req.url ?? '', authorized, body: Buffer.concat(chunks).toString() });
    res.setHeader('Content-Type', 'application/json; charset=utf-8');
    if (!authorized) {
      res.writeHead(401).end(JSON.stringify({ message: 'Bad credentials', documentation_url: 'https://docs.github.com/rest' }));
      return;
    }
    if (req.url === '/graphql') res.end(JSON.stringify({ data: { viewer: { login: 'agent' } } }));
    else res.end(JSON.stringify({ full_name: (req.url ?? '').split('/').slice(2, 4).join('/'), served: true }));
  });
}

const gh = (args: string[]) =>
  runProcess('gh', args, {
    env: {
      PATH: process.env.PATH,
      HOME: home,
      GH_CONFIG_DIR: home,
      GH_TOKEN: PLACEHOLDER,
      GH_HOST: 'github.com',
      GH_PROMPT_DISABLED: '1',
      GH_NO_UPDATE_NOTIFIER: '1',
      NO_COLOR: '1',
      HTTPS_PROXY: airlock.proxyUrl,
      SSL_CERT_FILE: airlock.bundlePath,
    },
    timeoutMs: 30_000,
  });

beforeAll(async () => {
  pki = await createTestPki();
  api = await startHttpsUpstream({ pki, names: ['api.github.com'], handler: standIn });
  home = tmpDir('airlock-github-api-');
  airlock = await startAirlock({
    policy: POLICY,
    resolve: { 'api.github.com:443': api.port },
    upstreamCa: [pki.caPem],
    credentials: credentialsFactory({ AIRLOCK_GITHUB_TOKEN: SECRET }),
  });
}, 60_000);

afterAll(async () => {
  await airlock?.close();
  await api?.close();
  rmTmp(home, pki?.dir);
});

/** Runs gh and checks nothing of the real token reached its output. */
async function ghRun(args: string[]) {
  const r = await gh(args);
  expect(secretLeaks(r.stdout + r.stderr, SECRET)).toEqual([]);
  return r;
}

describe('gh through a github: rule', () => {
  it('an allowed REST call works with the real token swapped in', async () => {
    const r = await ghRun(['api', 'repos/acme/app']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ full_name: 'acme/app', served: true });
    expect(served.at(-1)).toMatchObject({ method: 'GET', url: '/repos/acme/app', authorized: true });
    const line = await airlock.waitForAudit((l) => l.path === '/repos/acme/app' && l.action === 'allow');
    expect(line).toMatchObject({ rule: 'allow[0] api.github.com', credentials: ['github'], detail: 'github GET /repos/acme/app on acme/app' });
  }, 60_000);

  it('a repository deletion and another repository are refused with the reason gh prints', async () => {
    const before = served.length;
    const del = await ghRun(['api', '-X', 'DELETE', 'repos/acme/app']);
    expect(del.code).not.toBe(0);
    expect(del.stderr).toMatch(/delete-repo \(DELETE \/repos\/\{owner\}\/\{repo\}\) is denied by default; allow\[0\] api\.github\.com would need github\.allow: \[delete-repo\]/);
    expect(del.stderr).toMatch(/HTTP 403/);
    const other = await ghRun(['api', 'repos/evil/app']);
    expect(other.code).not.toBe(0);
    expect(other.stderr).toMatch(/repository evil\/app is not listed: allow\[0\] api\.github\.com allows the API for acme\/\*/);
    expect(served.length).toBe(before);
    const line = await airlock.waitForAudit((l) => l.path === '/repos/acme/app' && l.action === 'deny');
    expect(line).toMatchObject({ reason: 'path_not_allowed', status: 403, detail: 'github DELETE /repos/acme/app (endpoint delete-repo)' });
  }, 60_000);

  it('GraphQL: a query and a listed mutation run; an unlisted mutation is refused with the reason gh prints', async () => {
    const q = await ghRun(['api', 'graphql', '-f', 'query=query Me { viewer { login } }']);
    expect(q.code, q.stderr).toBe(0);
    expect(JSON.parse(q.stdout)).toEqual({ data: { viewer: { login: 'agent' } } });
    expect(await airlock.waitForAudit((l) => l.path === '/graphql' && l.detail === 'graphql query Me')).toMatchObject({ action: 'allow', status: 200 });
    const ok = await ghRun(['api', 'graphql', '-f', 'query=mutation { addComment(input: {subjectId: "x", body: "hi"}) { clientMutationId } }']);
    expect(ok.code, ok.stderr).toBe(0);

    const before = served.length;
    const m = await ghRun(['api', 'graphql', '-f', 'query=mutation { deleteRepository(input: {repositoryId: "R_1"}) { clientMutationId } }']);
    expect(m.code).not.toBe(0);
    expect(m.stderr).toMatch(/Airlock: GraphQL mutation deleteRepository is not allowed: allow\[0\] api\.github\.com allows mutations addComment/);
    expect(served.length).toBe(before);
    const line = await airlock.waitForAudit((l) => l.path === '/graphql' && l.action === 'deny');
    expect(line).toMatchObject({ reason: 'graphql_not_allowed', status: 403, detail: 'graphql mutation (anonymous): deleteRepository' });
  }, 60_000);
});

describe('the attacker side, by hand', () => {
  const send = (method: string, path: string, body?: string, headers: Record<string, string> = {}) =>
    httpsViaProxy({
      proxyPort: airlock.port,
      proxyAuthorization: airlock.proxyAuthorization,
      url: `https://api.github.com${path}`,
      ca: [readFileSync(airlock.bundlePath, 'utf8')],
      method,
      body,
      headers: { authorization: `token ${PLACEHOLDER}`, 'content-type': 'application/json', ...headers },
    });
  /** curl sends the path as written (--path-as-is), dots and escapes included. */
  const curl = async (method: string, path: string, headers: string[] = []) => {
    const r = await runProcess(
      'curl',
      ['-sS', '--path-as-is', '-X', method, '-x', airlock.proxyUrl, '--cacert', airlock.bundlePath, '-H', `authorization: token ${PLACEHOLDER}`, ...headers.flatMap((h) => ['-H', h]), '-w', '\n%{http_code}', `https://api.github.com${path}`],
      { timeoutMs: 30_000 },
    );
    const lines = r.stdout.trimEnd().split('\n');
    return { status: Number(lines.pop()), body: lines.join('\n') };
  };

  it('refuses path tricks and method overrides before they reach GitHub', async () => {
    const before = served.length;
    for (const path of ['/repos/acme/app/../../evil/app', '/repos/acme/app/%2e%2e/%2e%2e/evil/app', '/repos/evil%2Fapp/hooks', '/repos//evil/app', '/Repos/EVIL/App', '/repos/acme/app/HOOKS', '/repositories/1/hooks']) {
      const r = await curl('GET', path);
      expect(r.status, path).toBe(403);
    }
    const o = await curl('POST', '/repos/acme/app/issues', ['x-http-method-override: DELETE']);
    expect(o.status).toBe(403);
    expect(o.body).toMatch(/X-HTTP-Method-Override/i);
    expect(served.length).toBe(before);
  }, 60_000);

  it('refuses GraphQL bodies that hide a mutation, batches, huge and non-JSON bodies', async () => {
    const before = served.length;
    const bodies = [
      JSON.stringify({ query: 'query Safe { viewer { login } } mutation Evil { deleteRepository(input: {}) { x } }', operationName: 'Safe' }),
      JSON.stringify({ query: 'query Safe { viewer { login } } mutation Evil { deleteRepository(input: {}) { x } }', operationName: 'Evil' }),
      JSON.stringify({ query: 'mutation { addComment: deleteRepository(input: {}) { x } }' }),
      JSON.stringify({ query: 'mutation { ...F } fragment F on Mutation { deleteRepository(input: {}) { x } }' }),
      JSON.stringify([{ query: '{ viewer { login } }' }, { query: 'mutation { deleteRepository(input: {}) { x } }' }]),
      JSON.stringify({ query: '{' + 'a{'.repeat(100_000) + 'b' + '}'.repeat(100_001) }),
      'query=mutation{deleteRepository(input:{}){x}}',
    ];
    for (const body of bodies) {
      const r = await send('POST', '/graphql', body);
      expect(r.status, body.slice(0, 80)).toBe(403);
      expect(JSON.parse(r.body).errors[0].message, body.slice(0, 80)).toMatch(/^Airlock: /);
    }
    const huge = await send('POST', '/graphql', JSON.stringify({ query: `{ viewer { login } } # ${'x'.repeat(2 * 1024 * 1024)}` }));
    expect(huge.status).toBe(413);
    expect(JSON.parse(huge.body).errors[0].message).toMatch(/at most 1048576 bytes/);
    expect(served.length).toBe(before);
  }, 60_000);
});

describe('report mode', () => {
  it('lets a refused mutation through, audited as would_deny with the operation', async () => {
    const report = await startAirlock({
      policy: POLICY.replace('name: github-api', 'name: github-api\nmode: report'),
      resolve: { 'api.github.com:443': api.port },
      upstreamCa: [pki.caPem],
      credentials: credentialsFactory({ AIRLOCK_GITHUB_TOKEN: SECRET }),
    });
    try {
      const before = served.length;
      const r = await httpsViaProxy({
        proxyPort: report.port,
        proxyAuthorization: report.proxyAuthorization,
        url: 'https://api.github.com/graphql',
        ca: [readFileSync(report.bundlePath, 'utf8')],
        method: 'POST',
        body: JSON.stringify({ query: 'mutation Drop { deleteRepository(input: {}) { x } }' }),
        headers: { authorization: `token ${PLACEHOLDER}`, 'content-type': 'application/json' },
      });
      expect(r.status).toBe(200);
      expect(served.length).toBe(before + 1);
      expect(served.at(-1)).toMatchObject({ url: '/graphql', authorized: true });
      const line = await report.waitForAudit((l) => l.path === '/graphql');
      expect(line).toMatchObject({ action: 'would_deny', reason: 'graphql_not_allowed', status: 200, detail: 'graphql mutation Drop: deleteRepository' });
    } finally {
      await report.close();
    }
  }, 60_000);
});

