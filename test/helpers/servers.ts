// Real servers on loopback for Airlock's tests: a test PKI for upstream TLS, HTTP(S) upstreams that
// count connections and record requests, a smart-HTTP git server (git http-backend over HTTPS), an
// in-process Airlock (ProxyRuntime + one session) and a runner for the built CLI.
//
// Everything listens on 127.0.0.1 port 0 and writes only under fresh tmp dirs. Nothing here mocks
// the proxy path or the network: tests talk to these servers through the real proxy.
//
// Stable API (other test files import it; extend, do not change):
//   tmpDir(prefix?)                      → absolute path of a fresh dir; caller removes it (rmTmp)
//   rmTmp(...dirs)                       → rm -rf each dir (ignores missing)
//   createTestPki({ dir? })              → Promise<TestPki> { caPem, caFile, dir, issue(names) → Promise<{ key, cert }> }
//   startHttpsUpstream({ pki, names, handler?, onUpgrade? }) → Promise<Upstream>
//   startHttpUpstream({ handler?, onUpgrade? })               → Promise<Upstream>
//       Upstream = { server, port, connections (live count of accepted TCP connections),
//                    requests (recorded { method, url, headers }), close() }
//       default handler echoes JSON { method, path, host, headers, body }
//   startGitServer({ pki, names, auth? }) → Promise<GitServer> { ...Upstream, repoName ('repo.git'),
//       repoDir (bare repo), headCommit, authSeen (Authorization values seen), close() }
//   startAirlock({ policy, resolve?, upstreamCa?, lookup?, beforeDial?, allowPrivate?, listenHost?, ... })
//       → Promise<AirlockHandle>
//       { runtime, session, proxyUrl, proxyAuthorization, port, bundlePath, stateDir,
//         auditLines(), waitForAudit(pred, timeoutMs?), close() }
//   runCli(args, { env?, cwd?, input?, timeoutMs? }) → Promise<{ code, signal, stdout, stderr }>
//   runProcess(cmd, args, opts)          → same, for any program (curl, git, python3, node)
//   isolatedGitEnv(home, extra?)         → env for git that ignores user/system config
//   freePort()                           → a port that was free a moment ago (for CLIs that need one)
//   waitFor(check, timeoutMs?, what?), sleep(ms), echoHandler, toResolveMap(resolve)
//   REPO_ROOT, CLI_PATH
// Hand-built proxy clients (raw CONNECT, requests inside tunnels, a CONNECT https.Agent for ws)
// are in ./clients.ts.
import { spawn } from 'node:child_process';
import { webcrypto, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import * as x509 from '@peculiar/x509';
import pino from 'pino';
import { parsePolicy } from '../../src/policy/index.js';
import { EC_KEYGEN as EC, EC_SIGN, serialNumber as serial, toPem as pem } from '../../src/ca/x509-util.js';
import { ProxyRuntime } from '../../src/sessions/runtime.js';
import { POLICY_FILES } from '../../src/cli/policy-files.js';
import type { RuntimeOptions } from '../../src/sessions/runtime.js';
import { proxyUrl as sessionProxyUrl } from '../../src/sessions/registry.js';
import type { Session } from '../../src/sessions/session.js';
import type { Endpoint } from '../../src/proxy/upstream.js';
import type { ProxyLimits } from '../../src/proxy/server.js';
import type { CaKeyType } from '../../src/ca/session-ca.js';
import type { CredentialBroker } from '../../src/credentials/broker.js';
import type { Policy } from '../../src/policy/index.js';
import { parseAuditLines } from '../../src/audit/report.js';
import type { AuditLine } from '../../src/audit/report.js';


export type { AuditLine };

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CLI_PATH = join(REPO_ROOT, 'dist', 'cli', 'main.js');

// ---------------------------------------------------------------- tmp dirs

/** A fresh empty directory under the OS tmp dir. The caller removes it (rmTmp). */
export function tmpDir(prefix = 'airlock-test-'): string {
  return mkdtempSync(join(os.tmpdir(), prefix));
}

export function rmTmp(...dirs: (string | undefined)[]): void {
  for (const dir of dirs) if (dir) rmSync(dir, { recursive: true, force: true });
}

// ---------------------------------------------------------------- test PKI

export interface IssuedCert {
  /** PKCS#8 PEM private key. */
  readonly key: string;
  /** Leaf certificate PEM (signed by the test CA). */
  readonly cert: string;
}

export interface TestPki {
  /** The test CA certificate (PEM). */
  readonly caPem: string;
  /** caPem written to a file (for --upstream-ca, GIT_SSL_CAINFO, ...). */
  readonly caFile: string;
  /** Directory holding caFile; removed by the caller if createTestPki made it. */
  readonly dir: string;
  /** A server leaf for these names (DNS names or IP literals, first one becomes the CN). */
  issue(names: readonly string[]): Promise<IssuedCert>;
}


/**
 * A CA for upstream test servers ("the public internet" of the tests). Unconstrained, EC P-256.
 * Pass `caFile` to airlock as --upstream-ca (or `caPem` as upstreamCa).
 */
export async function createTestPki(opts: { dir?: string } = {}): Promise<TestPki> {
  const dir = opts.dir ?? tmpDir('airlock-pki-');
  const caKeys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as CryptoKeyPair;
  const now = Date.now();
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=Airlock Test Upstream CA ${randomBytes(3).toString('hex')}, O=Airlock tests`,
    notBefore: new Date(now - 3_600_000),
    notAfter: new Date(now + 7 * 86_400_000),
    keys: caKeys,
    signingAlgorithm: EC_SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  const caPem = ca.toString('pem') + '\n';
  const caFile = join(dir, 'test-upstream-ca.pem');
  writeFileSync(caFile, caPem);
  return {
    caPem,
    caFile,
    dir,
    async issue(names) {
      if (names.length === 0) throw new Error('issue() needs at least one name');
      const keys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as CryptoKeyPair;
      const leaf = await x509.X509CertificateGenerator.create({
        serialNumber: serial(),
        subject: `CN=${names[0]}`,
        issuer: ca.subject,
        notBefore: new Date(now - 3_600_000),
        notAfter: new Date(now + 7 * 86_400_000),
        signingKey: caKeys.privateKey,
        publicKey: keys.publicKey,
        signingAlgorithm: EC_SIGN,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
          new x509.SubjectAlternativeNameExtension(
            names.map((n) => ({ type: net.isIP(n) ? ('ip' as const) : ('dns' as const), value: n })),
          ),
          await x509.AuthorityKeyIdentifierExtension.create(ca),
          await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
        ],
      });
      return { key: pem('PRIVATE KEY', await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)), cert: leaf.toString('pem') + '\n' };
    },
  };
}

// ---------------------------------------------------------------- upstream servers

export interface RecordedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
}

export type UpstreamHandler = (req: http.IncomingMessage, res: http.ServerResponse) => void;
export type UpgradeHandler = (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void;

export interface TestUpstream {
  readonly server: http.Server | https.Server;
  readonly port: number;
  /** TCP connections accepted so far (live). */
  readonly connections: number;
  /** Every request (and upgrade request) received, in order. */
  readonly requests: RecordedRequest[];
  close(): Promise<void>;
}

export interface UpstreamOptions {
  /** Request handler; default echoes JSON { method, path, host, headers, body }. */
  readonly handler?: UpstreamHandler;
  /** 'upgrade' handler (e.g. a ws WebSocketServer's handleUpgrade). Default: destroy the socket. */
  readonly onUpgrade?: UpgradeHandler;
}

/** Echoes the request as JSON (reads the whole body first). */
export const echoHandler: UpstreamHandler = (req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const url = new URL(req.url ?? '/', 'http://x');
    const body = JSON.stringify({
      method: req.method,
      path: url.pathname + url.search,
      host: req.headers.host,
      headers: req.headers,
      body: Buffer.concat(chunks).toString('utf8'),
    });
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  });
};

function instrument(server: http.Server, opts: UpstreamOptions): Promise<TestUpstream> {
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const requests: RecordedRequest[] = [];
  // For an HTTPS server 'connection' is the raw TCP accept, before any TLS.
  server.on('connection', (socket: net.Socket) => {
    connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  const record = (req: http.IncomingMessage) =>
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: { ...req.headers } });
  const handler = opts.handler ?? echoHandler;
  server.on('request', (req, res) => {
    record(req);
    handler(req, res);
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    record(req);
    if (opts.onUpgrade) opts.onUpgrade(req, socket, head);
    else socket.destroy();
  });
  server.on('tlsClientError', () => {});
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => {
      const port = (server.address() as net.AddressInfo).port;
      resolve({
        server,
        port,
        get connections() {
          return connections;
        },
        requests,
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy();
            server.closeAllConnections();
            server.close(() => done());
          }),
      });
    });
  });
}

/** An HTTPS server on 127.0.0.1:0 with a leaf from `pki` for `names`. */
export async function startHttpsUpstream(opts: UpstreamOptions & { pki: TestPki; names: readonly string[] }): Promise<TestUpstream> {
  const { key, cert } = await opts.pki.issue(opts.names);
  const server = https.createServer({ key, cert, ALPNProtocols: ['http/1.1'] });
  return instrument(server, opts);
}

/** A plain HTTP server on 127.0.0.1:0. */
export async function startHttpUpstream(opts: UpstreamOptions = {}): Promise<TestUpstream> {
  return instrument(http.createServer(), opts);
}

// ---------------------------------------------------------------- git smart-HTTP server

export interface GitServer extends TestUpstream {
  /** URL path of the repository: https://<name>:<port>/repo.git */
  readonly repoName: string;
  /** The bare repository on disk. */
  readonly repoDir: string;
  /** Commit id of the initial commit (HEAD of main). */
  readonly headCommit: string;
  /** Authorization header values the server saw (only recorded when `auth` is set). */
  readonly authSeen: string[];
}

/** Environment for git commands that ignores the user's and system git config. */
export function isolatedGitEnv(home: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const name of ['PATH', 'LANG', 'LC_ALL', 'TMPDIR']) if (process.env[name]) env[name] = process.env[name];
  return {
    ...env,
    HOME: home,
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_TERMINAL_PROMPT: '0',
    GIT_AUTHOR_NAME: 'Airlock Test',
    GIT_AUTHOR_EMAIL: 'test@airlock.invalid',
    GIT_COMMITTER_NAME: 'Airlock Test',
    GIT_COMMITTER_EMAIL: 'test@airlock.invalid',
    ...extra,
  };
}

async function git(args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<string> {
  const r = await runProcess('git', args, { cwd, env, timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`git ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r.stdout.trim();
}

/**
 * An HTTPS server running `git http-backend` (CGI) over a bare repo `repo.git` holding one commit
 * (README.md) on `main`. Push is enabled (http.receivepack). With `auth`, every request must carry
 * Basic credentials for that user/password (401 + WWW-Authenticate otherwise).
 */
export async function startGitServer(opts: {
  pki: TestPki;
  names: readonly string[];
  auth?: { user: string; password: string };
  /** Decides each request's Authorization instead of `auth`: the remote user, or null for 401. */
  authorize?: (authorization: string | undefined, path: string) => string | null;
}): Promise<GitServer> {
  const root = tmpDir('airlock-git-');
  const env = isolatedGitEnv(root);
  const work = join(root, 'work');
  mkdirSync(work);
  await git(['init', '-q', '-b', 'main'], work, env);
  writeFileSync(join(work, 'README.md'), '# airlock test repo\n');
  await git(['add', 'README.md'], work, env);
  await git(['commit', '-q', '-m', 'initial commit'], work, env);
  const headCommit = await git(['rev-parse', 'HEAD'], work, env);
  const repoDir = join(root, 'repo.git');
  await git(['clone', '-q', '--bare', work, repoDir], root, env);
  await git(['config', 'http.receivepack', 'true'], repoDir, env);
  await git(['config', 'http.uploadpack', 'true'], repoDir, env);

  const authSeen: string[] = [];
  const expected = opts.auth ? 'Basic ' + Buffer.from(`${opts.auth.user}:${opts.auth.password}`).toString('base64') : null;

  const handler: UpstreamHandler = (req, res) => {
    let remoteUser = '';
    if (opts.authorize) {
      const user = opts.authorize(req.headers.authorization, req.url ?? '/');
      if (req.headers.authorization) authSeen.push(req.headers.authorization);
      if (user === null) {
        req.resume();
        res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="airlock-test-git"', 'Content-Type': 'text/plain' });
        res.end('authentication required\n');
        return;
      }
      remoteUser = user;
    } else if (opts.auth) {
      const given = req.headers.authorization;
      if (given) authSeen.push(given);
      if (given !== expected) {
        req.resume();
        res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="airlock-test-git"', 'Content-Type': 'text/plain' });
        res.end('authentication required\n');
        return;
      }
      remoteUser = opts.auth.user;
    }
    const url = new URL(req.url ?? '/', 'https://git.invalid');
    const cgiEnv: NodeJS.ProcessEnv = {
      ...env,
      GIT_PROJECT_ROOT: root,
      GIT_HTTP_EXPORT_ALL: '1',
      PATH_INFO: decodeURIComponent(url.pathname),
      QUERY_STRING: url.search.replace(/^\?/, ''),
      REQUEST_METHOD: req.method ?? 'GET',
      CONTENT_TYPE: req.headers['content-type'] ?? '',
      REMOTE_USER: remoteUser,
      REMOTE_ADDR: req.socket.remoteAddress ?? '127.0.0.1',
      GATEWAY_INTERFACE: 'CGI/1.1',
      SERVER_PROTOCOL: 'HTTP/1.1',
    };
    if (req.headers['content-length']) cgiEnv.CONTENT_LENGTH = req.headers['content-length'];
    // git http-backend inflates gzip request bodies itself when told the encoding.
    if (req.headers['content-encoding']) cgiEnv.HTTP_CONTENT_ENCODING = req.headers['content-encoding'];
    if (req.headers['git-protocol']) cgiEnv.GIT_PROTOCOL = String(req.headers['git-protocol']);
    const cgi = spawn('git', ['http-backend'], { env: cgiEnv, stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    cgi.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    cgi.stdin.on('error', () => {});
    req.pipe(cgi.stdin);
    let head = Buffer.alloc(0);
    let headersDone = false;
    cgi.stdout.on('data', (chunk: Buffer) => {
      if (headersDone) {
        res.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      let end = head.indexOf('\r\n\r\n');
      let sepLen = 4;
      const lf = head.indexOf('\n\n');
      if (lf !== -1 && (end === -1 || lf < end)) {
        end = lf;
        sepLen = 2;
      }
      if (end === -1) return;
      headersDone = true;
      let status = 200;
      let statusText: string | undefined;
      const headers: Record<string, string | string[]> = {};
      for (const line of head.subarray(0, end).toString('latin1').split(/\r?\n/)) {
        const colon = line.indexOf(':');
        if (colon <= 0) continue;
        const name = line.slice(0, colon).trim();
        const value = line.slice(colon + 1).trim();
        if (name.toLowerCase() === 'status') {
          const m = /^(\d{3})\s*(.*)$/.exec(value);
          if (m) {
            status = Number(m[1]);
            statusText = m[2] || undefined;
          }
          continue;
        }
        const prev = headers[name];
        headers[name] = prev === undefined ? value : ([] as string[]).concat(prev, value);
      }
      if (statusText) res.writeHead(status, statusText, headers);
      else res.writeHead(status, headers);
      const rest = head.subarray(end + sepLen);
      if (rest.length > 0) res.write(rest);
    });
    cgi.on('close', (code) => {
      if (!headersDone) {
        res.writeHead(500, { 'Content-Type': 'text/plain' });
        res.end(`git http-backend exited ${code}: ${stderr}\n`);
      } else {
        res.end();
      }
    });
    res.on('close', () => {
      if (cgi.exitCode === null) cgi.kill('SIGTERM');
    });
  };
  const { key, cert } = await opts.pki.issue(opts.names);
  const upstream = await instrument(https.createServer({ key, cert, ALPNProtocols: ['http/1.1'] }), { handler });
  return {
    server: upstream.server,
    port: upstream.port,
    get connections() {
      return upstream.connections;
    },
    requests: upstream.requests,
    repoName: 'repo.git',
    repoDir,
    headCommit,
    authSeen,
    close: async () => {
      await upstream.close();
      rmTmp(root);
    },
  };
}

// ---------------------------------------------------------------- in-process Airlock

export interface AirlockOptions {
  /** Policy YAML text. */
  readonly policy: string;
  /** "host:port" → where to dial. Record values may also be a bare port on 127.0.0.1. */
  readonly resolve?: ReadonlyMap<string, Endpoint> | Readonly<Record<string, Endpoint | number>>;
  /** PEM roots trusted for upstream TLS (and added to the session bundle). Default: none extra. */
  readonly upstreamCa?: readonly string[];
  readonly caKeyType?: CaKeyType;
  readonly limits?: Partial<ProxyLimits>;
  readonly credentials?: (policy: Policy, sessionId: string) => Promise<CredentialBroker>;
  /** The proxy's operational log; default silent. */
  readonly log?: pino.Logger;
  /** Name resolution hook (tests: a resolver they control, never real DNS). Default: system resolver. */
  readonly lookup?: RuntimeOptions['lookup'];
  /** Called with every endpoint just before the proxy dials it (tests: a recorder that may throw). */
  readonly beforeDial?: RuntimeOptions['beforeDial'];
  /** CIDR ranges opened despite the destination guard (allow_private). */
  readonly allowPrivate?: readonly string[];
  /** Address the proxy listens on (and proxyUrl names). Default 127.0.0.1. */
  readonly listenHost?: string;
  /**
   * Write the policy to a file in the state dir and have the session follow it, watched, as the
   * CLI's sessions do: reload, approve and editing the file work on it. Default: the policy is text.
   */
  readonly policyFile?: boolean;
}

export interface AirlockHandle {
  readonly runtime: ProxyRuntime;
  readonly session: Session;
  /** http://<id>:<token>@127.0.0.1:<port> (or the listenHost given) */
  readonly proxyUrl: string;
  /** Value for a Proxy-Authorization header ("Basic ..."). */
  readonly proxyAuthorization: string;
  readonly port: number;
  /** Session CA + upstreamCa, PEM. */
  readonly bundlePath: string;
  readonly stateDir: string;
  /** The policy file the session follows (with the policyFile option). */
  readonly policyFile?: string;
  /** Flushes and reads the session's audit log. */
  auditLines(): Promise<AuditLine[]>;
  /** Polls the audit log until a line matches (audit lines are written when a request ends). */
  waitForAudit(pred: (line: AuditLine) => boolean, timeoutMs?: number): Promise<AuditLine>;
  close(): Promise<void>;
}

export function toResolveMap(resolve: AirlockOptions['resolve']): Map<string, Endpoint> {
  if (!resolve) return new Map();
  if (resolve instanceof Map) return new Map(resolve);
  const map = new Map<string, Endpoint>();
  for (const [key, value] of Object.entries(resolve as Record<string, Endpoint | number>)) {
    map.set(key, typeof value === 'number' ? { address: '127.0.0.1', port: value } : value);
  }
  return map;
}

export async function startAirlock(opts: AirlockOptions): Promise<AirlockHandle> {
  const stateDir = tmpDir('airlock-state-');
  const roots = [...(opts.upstreamCa ?? [])];
  const runtime = new ProxyRuntime({
    stateDir,
    trustRoots: roots,
    upstreamCa: roots,
    resolve: toResolveMap(opts.resolve),
    log: opts.log ?? pino({ level: 'silent' }),
    caKeyType: opts.caKeyType,
    limits: opts.limits,
    credentials: opts.credentials,
    lookup: opts.lookup,
    beforeDial: opts.beforeDial,
    allowPrivate: opts.allowPrivate,
    ...(opts.policyFile ? { policyFiles: POLICY_FILES } : {}),
  });
  const policyFile = opts.policyFile ? join(stateDir, 'policy.yaml') : undefined;
  if (policyFile) writeFileSync(policyFile, opts.policy, { mode: 0o600 });
  const policy = parsePolicy(opts.policy, policyFile ?? 'test-policy.yaml');
  const session = await runtime.sessions.create(policy);
  if (policyFile) runtime.policies.follow(session, policyFile, true);
  const listenHost = opts.listenHost ?? '127.0.0.1';
  const address = await runtime.proxy.listen(listenHost, 0);
  const auditFile = join(session.dir, 'audit.jsonl');
  const auditLines = async (): Promise<AuditLine[]> => {
    session.audit.flush();
    // pino's async destination opens the file lazily; give it a moment on first use.
    for (let i = 0; i < 20 && !existsSync(auditFile); i++) await sleep(25);
    if (!existsSync(auditFile)) return [];
    return parseAuditLines(readFileSync(auditFile, 'utf8'));
  };
  return {
    runtime,
    session,
    proxyUrl: sessionProxyUrl(session, listenHost, address.port),
    proxyAuthorization: 'Basic ' + Buffer.from(`${session.id}:${session.token}`).toString('base64'),
    port: address.port,
    bundlePath: session.bundlePath,
    stateDir,
    policyFile,
    auditLines,
    async waitForAudit(pred, timeoutMs = 5_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = (await auditLines()).find(pred);
        if (found) return found;
        if (Date.now() > deadline) {
          throw new Error(`no matching audit line within ${timeoutMs} ms; have:\n${JSON.stringify(await auditLines(), null, 1)}`);
        }
        await sleep(25);
      }
    },
    async close() {
      await runtime.close();
      rmTmp(stateDir);
    },
  };
}

// ---------------------------------------------------------------- processes

export interface ProcessResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  /** Written to stdin, which is then closed. */
  readonly input?: string;
  /** Kill (SIGKILL) after this long; default 30 s. */
  readonly timeoutMs?: number;
}

/** Runs a program to completion. Never rejects for a non-zero exit; rejects if it cannot start. */
export function runProcess(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd ?? REPO_ROOT, env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

/** Runs the built CLI (`node dist/cli/main.js ...`). Needs `npm run build` first. */
export function runCli(args: readonly string[], opts: RunOptions = {}): Promise<ProcessResult> {
  if (!existsSync(CLI_PATH)) throw new Error(`${CLI_PATH} is missing: run \`npm run build\` first`);
  return runProcess(process.execPath, [CLI_PATH, ...args], opts);
}

/** A TCP port on 127.0.0.1 that was free when asked (for CLIs that need a fixed --listen port). */
/** A dial function for Airlock's HTTP/1.1 client that opens plain TCP (tests of the client alone). */
export function plainDial(host: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port }, () => resolve(s));
    s.once('error', reject);
  });
}

export interface ScriptedServer {
  readonly port: number;
  /** Every connection accepted so far, in order. */
  readonly connections: net.Socket[];
  /** Raw bytes each connection received, by connection index. */
  readonly received: string[];
  close(): Promise<void>;
}

/**
 * A plain TCP server on loopback that answers with whatever `onData` writes: for exact byte-level
 * responses (framing edge cases) that a real HTTP server would never send.
 */
export async function startScriptedServer(onData: (socket: net.Socket, text: string, index: number) => void): Promise<ScriptedServer> {
  const connections: net.Socket[] = [];
  const received: string[] = [];
  const server = net.createServer((socket) => {
    const index = connections.push(socket) - 1;
    received[index] = '';
    socket.on('error', () => {});
    socket.on('data', (d) => {
      received[index] += d.toString('latin1');
      onData(socket, received[index]!, index);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    connections,
    received,
    close: () =>
      new Promise((resolve) => {
        for (const c of connections) c.destroy();
        server.close(() => resolve());
      }),
  };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` until it returns a truthy value or the time runs out. */
export async function waitFor<T>(check: () => T | Promise<T>, timeoutMs = 5_000, what = 'condition'): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}
