// The toolchain matrix shared by the `airlock exec` and `airlock run` tests: one HTTPS stand-in on
// 127.0.0.1 answering as registry.npmjs.org, pypi.org, proxy.golang.org and api.example.test, a
// git server as git.example.test, a policy allowing them, and the shell commands of each real
// client (npm, pip, go, Java HttpClient, Ruby net/http, curl, git, Python requests, Node fetch).
// Each command prints `TOOL <name> OK` when the client got what the stand-in serves.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { goProxyStandIn, npmStandIn, pypiStandIn, routeByHost } from './package-standins.js';
import { echoHandler, runProcess, startGitServer, startHttpsUpstream } from './servers.js';
import type { GitServer, TestPki, TestUpstream } from './servers.js';

export const TOOLS = ['npm', 'pip', 'go', 'java', 'ruby', 'curl', 'git', 'python-requests', 'node-fetch'] as const;
export type Tool = (typeof TOOLS)[number];

export const NPM_PKG = 'airlock-toolchain-pkg';
export const PYPI_PROJECT = 'airlock-toolchain';
export const GO_MODULE = 'example.test/tiny';
const NODE_EXPORT = 'toolchain package';

export interface ToolchainStandIns {
  readonly upstream: TestUpstream;
  readonly git: GitServer;
  /** --resolve entries mapping the names to the stand-ins. */
  readonly resolve: string[];
  readonly policy: string;
  close(): Promise<void>;
}

export async function startToolchainStandIns(pki: TestPki, dir: string): Promise<ToolchainStandIns> {
  const [npm, pypi, goproxy] = await Promise.all([npmStandIn(dir, NPM_PKG, NODE_EXPORT), pypiStandIn(dir, PYPI_PROJECT), goProxyStandIn(dir, GO_MODULE)]);
  const upstream = await startHttpsUpstream({
    pki,
    names: ['registry.npmjs.org', 'pypi.org', 'proxy.golang.org', 'api.example.test'],
    handler: routeByHost({ 'registry.npmjs.org': npm.handler, 'pypi.org': pypi.handler, 'proxy.golang.org': goproxy.handler, 'api.example.test': echoHandler }),
  });
  const git = await startGitServer({ pki, names: ['git.example.test'] });
  const resolve = [
    ...['registry.npmjs.org', 'pypi.org', 'proxy.golang.org', 'api.example.test'].map((h) => `${h}:443:127.0.0.1:${upstream.port}`),
    `git.example.test:443:127.0.0.1:${git.port}`,
  ];
  const policy = join(dir, 'toolchains.yaml');
  writeFileSync(
    policy,
    ['version: 1', 'name: toolchains', 'allow:', ...['registry.npmjs.org', 'pypi.org', 'proxy.golang.org', 'api.example.test', 'git.example.test'].map((h) => `  - host: ${h}`), ''].join('\n'),
    { mode: 0o644 },
  );
  return { upstream, git, resolve, policy, close: async () => void (await Promise.all([upstream.close(), git.close()])) };
}

/** Java's HttpClient through HTTPS_PROXY (it reads no proxy variable itself), printing status and body size. */
const FETCH_JAVA = `
import java.net.*;
import java.net.http.*;

public class Fetch {
  public static void main(String[] args) throws Exception {
    URI proxy = URI.create(System.getenv("HTTPS_PROXY"));
    String[] user = proxy.getUserInfo().split(":", 2);
    HttpClient client = HttpClient.newBuilder()
        .proxy(ProxySelector.of(new InetSocketAddress(proxy.getHost(), proxy.getPort())))
        .authenticator(new Authenticator() {
          @Override protected PasswordAuthentication getPasswordAuthentication() {
            return getRequestorType() == RequestorType.PROXY ? new PasswordAuthentication(user[0], user[1].toCharArray()) : null;
          }
        })
        .build();
    HttpResponse<String> r = client.send(HttpRequest.newBuilder(URI.create(args[0])).build(), HttpResponse.BodyHandlers.ofString());
    System.out.println("JAVA " + r.statusCode() + " " + r.body().length());
  }
}
`;

/** Compiles Fetch.java into `dir` with the host's javac (for Java 11+, which a JRE runs). */
export async function compileJavaFetch(dir: string): Promise<void> {
  writeFileSync(join(dir, 'Fetch.java'), FETCH_JAVA);
  const r = await runProcess('javac', ['--release', '11', '-d', dir, join(dir, 'Fetch.java')], { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`javac failed (${r.code}): ${r.stderr}`);
}

/**
 * The shell command (sh) that runs one client in `work` (a writable scratch directory), and
 * prints `TOOL <name> OK` on success. `javaDir` holds Fetch.class; `undici` is a path the node
 * client may require (Node 20's fetch ignores proxy variables without its EnvHttpProxyAgent).
 */
export function toolCommand(tool: Tool, o: { work: string; javaDir: string; undici?: string; python?: string }): string {
  const py = o.python ?? 'python3';
  const ok = `&& echo "TOOL ${tool} OK"`;
  switch (tool) {
    case 'npm':
      return (
        `mkdir -p ${o.work}/npm && cd ${o.work}/npm && echo '{}' > package.json && ` +
        `npm install --no-audit --no-fund --no-update-notifier --loglevel=error --cache ${o.work}/npm-cache ${NPM_PKG} && ` +
        `node -e 'process.exit(require("${NPM_PKG}") === "${NODE_EXPORT}" ? 0 : 1)' ${ok}`
      );
    case 'pip':
      return (
        `${py} -m pip download --no-deps --no-cache-dir --disable-pip-version-check --index-url https://pypi.org/simple/ -d ${o.work}/pip ${PYPI_PROJECT} && ` +
        `ls ${o.work}/pip/*.whl ${ok}`
      );
    case 'go':
      return (
        `mkdir -p ${o.work}/go && cd ${o.work}/go && GOPATH=${o.work}/go/path GOMODCACHE=${o.work}/go/mod GOCACHE=${o.work}/go/cache ` +
        `GOPROXY=https://proxy.golang.org GOSUMDB=off GOTOOLCHAIN=local GOFLAGS=-modcacherw go mod download -json ${GO_MODULE}@v1.0.0 ${ok}`
      );
    case 'java':
      return `java -Djdk.http.auth.tunneling.disabledSchemes= -cp ${o.javaDir} Fetch https://api.example.test/java | grep '^JAVA 200 ' ${ok}`;
    case 'ruby':
      return (
        `ruby -rnet/http -e 'r = Net::HTTP.get_response(URI(ARGV[0])); puts "RUBY #{r.code}"; exit(r.code == "200" ? 0 : 1)' https://api.example.test/ruby ${ok}`
      );
    case 'curl':
      return `curl -sS --fail --max-time 20 -o /dev/null https://api.example.test/curl ${ok}`;
    case 'git':
      return `GIT_TERMINAL_PROMPT=0 git ls-remote https://git.example.test/repo.git | grep -q refs/heads/main ${ok}`;
    case 'python-requests':
      return `${py} -c 'import requests, sys; r = requests.get(sys.argv[1], timeout=20); print("REQUESTS", r.status_code); sys.exit(r.status_code != 200)' https://api.example.test/requests ${ok}`;
    case 'node-fetch': {
      const agent = o.undici ? `const u = require(${JSON.stringify(o.undici)}); u.setGlobalDispatcher(new u.EnvHttpProxyAgent()); ` : '';
      return `node -e '${agent}fetch(process.argv[1]).then((r) => { console.log("FETCH", r.status); process.exit(r.status === 200 ? 0 : 1); }, (e) => { console.error(e.cause ?? e); process.exit(1); })' https://api.example.test/fetch ${ok}`;
    }
  }
}

/** Tools that printed their OK line in `output`. */
export function toolsOk(output: string): Set<string> {
  return new Set([...output.matchAll(/^TOOL (\S+) OK$/gm)].map((m) => m[1]!));
}
