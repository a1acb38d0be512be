// A GitHub App stand-in (HTTPS on loopback, as api.github.com): it checks the App JWT of a token
// request against the App's public key with node:crypto (not the library Airlock signs with),
// issues installation tokens limited to the requested repositories, and serves GET
// /repos/OWNER/REPO for those tokens only. `authorizeGit` decides git's Basic credentials with
// the same tokens, for startGitServer.
import { createVerify, generateKeyPairSync, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type http from 'node:http';
import { startHttpsUpstream } from './servers.js';
import type { TestPki, TestUpstream } from './servers.js';

export interface IssuedToken {
  readonly token: string;
  readonly repositories: readonly string[];
  readonly permissions: Readonly<Record<string, string>>;
  readonly expiresAt: number;
}

export interface GithubAppStandIn {
  readonly upstream: TestUpstream;
  readonly appId: string;
  readonly installationId: string;
  /** The App's private key as GitHub hands it out (PKCS#1 PEM), written to a file. */
  readonly keyFile: string;
  readonly keyPem: string;
  readonly issued: IssuedToken[];
  /** Token requests received, with what the stand-in made of them. */
  readonly tokenRequests: { jwtOk: boolean; problem?: string; status: number; body: unknown }[];
  /** Tokens seen on REST calls, in order (to tell which session used which). */
  readonly restTokens: string[];
  /** Tokens revoked with DELETE /installation/token. */
  readonly revoked: string[];
  /** How the token endpoint behaves. */
  mode: { lifetimeMs: number; fail?: 500 | 'garbage'; clockAheadMs?: number };
  /** The token of a Basic or token/Bearer Authorization, if it is a live one allowed `repo`. */
  allows(authorization: string | undefined, repo: string): IssuedToken | null;
  /** For startGitServer's authorize: GitHub's git accepts x-access-token:<installation token>. */
  authorizeGit(authorization: string | undefined, path: string): string | null;
  close(): Promise<void>;
}

const OWNER = 'octo';

function b64json(part: string): unknown {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
}

export async function startGithubAppStandIn(opts: { pki: TestPki; dir: string; repositories: readonly string[] }): Promise<GithubAppStandIn> {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
  const keyFile = join(opts.dir, 'app.private-key.pem');
  writeFileSync(keyFile, keyPem, { mode: 0o600 });
  const appId = '424242';
  const installationId = '9090901';
  const issued: IssuedToken[] = [];
  const tokenRequests: GithubAppStandIn['tokenRequests'] = [];
  const restTokens: string[] = [];
  const revoked: string[] = [];

  const checkJwt = (authorization: string | undefined, clockAheadMs: number): string | null => {
    const m = /^Bearer ([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/.exec(authorization ?? '');
    if (!m) return 'no JWT';
    const header = b64json(m[1]!) as { alg?: string };
    if (header.alg !== 'RS256') return `alg ${header.alg}`;
    const verifier = createVerify('RSA-SHA256');
    verifier.update(`${m[1]}.${m[2]}`);
    if (!verifier.verify(publicKey, Buffer.from(m[3]!, 'base64url'))) return 'bad signature';
    const claims = b64json(m[2]!) as { iss?: unknown; iat?: number; exp?: number };
    const now = Math.floor((Date.now() + clockAheadMs) / 1000);
    if (String(claims.iss) !== appId) return `iss ${String(claims.iss)}`;
    if (typeof claims.iat !== 'number' || claims.iat > now + 60) return 'iat in the future';
    if (typeof claims.exp !== 'number' || claims.exp <= now) return 'expired';
    if (claims.exp - claims.iat > 600) return 'lives over ten minutes';
    return null;
  };

  const live = (token: string) => issued.find((t) => t.token === token && t.expiresAt > Date.now()) ?? null;

  const standIn: GithubAppStandIn = {
    upstream: undefined as unknown as TestUpstream,
    appId,
    installationId,
    keyFile,
    keyPem,
    issued,
    tokenRequests,
    restTokens,
    revoked,
    mode: { lifetimeMs: 3600_000 },
    allows(authorization, repo) {
      let token = '';
      const basic = /^Basic (.+)$/i.exec(authorization ?? '');
      if (basic) {
        const [user, password] = Buffer.from(basic[1]!, 'base64').toString('utf8').split(':');
        if (user !== 'x-access-token') return null;
        token = password ?? '';
      } else {
        token = /^(?:token|Bearer) (.+)$/i.exec(authorization ?? '')?.[1] ?? '';
      }
      const found = live(token);
      return found && (found.repositories.length === 0 || found.repositories.includes(repo)) ? found : null;
    },
    authorizeGit(authorization, path) {
      const repo = /^\/(?:[^/]+\/)?([^/]+)\.git\//.exec(path)?.[1] ?? '';
      return standIn.allows(authorization, repo) ? 'x-access-token' : null;
    },
    close: () => standIn.upstream.close(),
  };

  const json = (res: http.ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };

  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'https://api.github.com');
      const tokenPath = /^\/app\/installations\/([^/]+)\/access_tokens$/.exec(url.pathname);
      if (req.method === 'POST' && tokenPath) {
        const problem = checkJwt(req.headers.authorization, standIn.mode.clockAheadMs ?? 0);
        const record = { jwtOk: problem === null, problem: problem ?? undefined, status: 0, body: null as unknown };
        tokenRequests.push(record);
        const answer = (status: number, body: unknown) => {
          record.status = status;
          record.body = body;
          json(res, status, body);
        };
        if (problem) {
          if (standIn.mode.clockAheadMs) res.setHeader('date', new Date(Date.now() + standIn.mode.clockAheadMs).toUTCString());
          return answer(401, { message: problem === 'expired' ? "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires" : 'A JSON web token could not be decoded', documentation_url: 'https://docs.github.com/rest' });
        }
        if (tokenPath[1] !== installationId) return answer(404, { message: 'Not Found' });
        if (standIn.mode.fail === 500) return answer(500, { message: 'Server Error' });
        if (standIn.mode.fail === 'garbage') {
          record.status = 200;
          res.writeHead(200, { 'content-type': 'text/html' });
          res.end('<html><body>Welcome to the captive portal</body></html>');
          return;
        }
        let asked: { repositories?: string[]; permissions?: Record<string, string> } = {};
        try {
          asked = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as typeof asked;
        } catch {
          return answer(400, { message: 'Problems parsing JSON' });
        }
        const repos = asked.repositories ?? [...opts.repositories];
        const outside = repos.filter((r) => !opts.repositories.includes(r));
        if (outside.length > 0) return answer(422, { message: `There is at least one repository that does not exist or is not accessible to the parent installation: ${outside.join(', ')}` });
        const token = `ghs_${randomBytes(18).toString('hex')}`;
        const expiresAt = Date.now() + standIn.mode.lifetimeMs;
        issued.push({ token, repositories: repos, permissions: asked.permissions ?? {}, expiresAt });
        return answer(201, {
          token,
          expires_at: new Date(expiresAt).toISOString(),
          permissions: asked.permissions ?? { contents: 'read', metadata: 'read' },
          repository_selection: 'selected',
          repositories: repos.map((name) => ({ name, full_name: `${OWNER}/${name}` })),
        });
      }
      if (req.method === 'DELETE' && url.pathname === '/installation/token') {
        const given = /^(?:token|Bearer) (.+)$/i.exec(req.headers.authorization ?? '')?.[1] ?? '';
        const found = live(given);
        if (!found) return json(res, 401, { message: 'Bad credentials' });
        revoked.push(given);
        issued.splice(issued.indexOf(found), 1, { ...found, expiresAt: 0 });
        res.writeHead(204);
        return res.end();
      }
      if (url.pathname === '/echo') {
        // Echoes the request's headers, as a debugging endpoint or an error page might.
        return json(res, 200, { headers: req.headers });
      }
      const repoPath = /^\/repos\/([^/]+)\/([^/]+)$/.exec(url.pathname);
      if (req.method === 'GET' && repoPath) {
        const given = /^(?:token|Bearer) (.+)$/i.exec(req.headers.authorization ?? '')?.[1];
        if (given) restTokens.push(given);
        if (!given || !live(given)) return json(res, 401, { message: 'Bad credentials' });
        if (!standIn.allows(req.headers.authorization, repoPath[2]!)) return json(res, 404, { message: 'Not Found' });
        return json(res, 200, { full_name: `${repoPath[1]}/${repoPath[2]}`, private: true });
      }
      json(res, 404, { message: 'Not Found' });
    });
  };
  (standIn as { upstream: TestUpstream }).upstream = await startHttpsUpstream({ pki: opts.pki, names: ['api.github.com'], handler });
  return standIn;
}
