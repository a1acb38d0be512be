// The environment every session client is configured through, in one place for exec, the daemon's
// exports and Docker: the proxy, the hosts that bypass it, the CA bundle under every name common
// clients read, the credential placeholders and the session id.
import { posix } from 'node:path';

/**
 * Variables naming a CA bundle file, by the tools that read them. All are set to the session bundle,
 * over whatever the caller had (a company `npm_config_cafile` or `PIP_CERT` would otherwise point
 * the tool away from it, and an environment variable beats the tools' own config files):
 * OpenSSL and everything on it (curl, Python ssl, Ruby, PHP/composer, .NET, Go on Linux, uv),
 * Node, Python requests/poetry and httplib2, curl, git, pip, npm/pnpm/yarn 1 (npm_config_ case
 * either way), yarn 2+, AWS CLI and SDKs, gcloud, gRPC, cargo, Deno, Nix, Ruby's bundler.
 */
export const CA_ENV_VARS = [
  'SSL_CERT_FILE',
  'NODE_EXTRA_CA_CERTS',
  'REQUESTS_CA_BUNDLE',
  'CURL_CA_BUNDLE',
  'GIT_SSL_CAINFO',
  'HTTPLIB2_CA_CERTS',
  'PIP_CERT',
  'npm_config_cafile',
  'NPM_CONFIG_CAFILE',
  'YARN_CAFILE',
  'YARN_CA_FILE_PATH',
  'AWS_CA_BUNDLE',
  'CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE',
  'GRPC_DEFAULT_SSL_ROOTS_FILE_PATH',
  'CARGO_HTTP_CAINFO',
  'DENO_CERT',
  'NIX_SSL_CERT_FILE',
  'BUNDLE_SSL_CA_CERT',
] as const;

/**
 * Variables naming a directory of CA certificates (OpenSSL, Go, .NET): set to the directory that
 * holds the session bundle and nothing else, so an inherited one adds no other roots.
 */
export const CA_DIR_ENV_VARS = ['SSL_CERT_DIR'] as const;

/**
 * CA settings that carry certificates inline rather than name a file (npm's and yarn's `ca`):
 * removed where a session inherits an environment (exec), as an inline `ca` would be used in
 * place of the session's `cafile`.
 */
export const SHADOWING_CA_VARS = ['npm_config_ca', 'NPM_CONFIG_CA', 'YARN_CA'] as const;

/** Where a container session finds its trust bundle (copied in, never mounted). */
export const CA_PATH_IN_CONTAINER = '/etc/airlock/ca.pem';

/** The variables that point clients at the proxy (both spellings). */
export const PROXY_ENV_VARS = ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy'] as const;

/**
 * Proxy variables a session does not set, which a client may read instead of the ones it does:
 * removed where a session inherits an environment (exec). Docker sessions start from none.
 */
export const SHADOWING_PROXY_VARS = ['ALL_PROXY', 'all_proxy'] as const;

/** NO_PROXY of a session on the host (exec, the daemon's exports): the host's loopback names. */
export const HOST_NO_PROXY = ['localhost', '127.0.0.1', '::1'] as const;
/** NO_PROXY inside a session container (airlock run): no `::1`, as it always had. */
export const CONTAINER_NO_PROXY = ['localhost', '127.0.0.1'] as const;

export interface ClientEnvOptions {
  /** http://ID:TOKEN@HOST:PORT */
  readonly proxyUrl: string;
  /** Hosts reached directly, not through the proxy. */
  readonly noProxy: readonly string[];
  /** The CA bundle's path, as the client sees it; its directory holds nothing else (SSL_CERT_DIR). */
  readonly bundlePath: string;
  /**
   * A JKS of the bundle for JVMs, which read no CA variable: set as JAVA_TOOL_OPTIONS (containers
   * get the image's own trust store replaced instead, and no JVM start-up notice).
   */
  readonly javaTrustStore?: string;
  /** Credential placeholders by variable name; set after (over) the proxy and CA variables. */
  readonly placeholders?: Readonly<Record<string, string>>;
  /** Sets AIRLOCK_SESSION, last. */
  readonly sessionId?: string;
}

/**
 * The session's client variables, in the order they are set: the proxy variables, NO_PROXY and
 * no_proxy, NODE_USE_ENV_PROXY, the CA variables (and JAVA_TOOL_OPTIONS with a Java trust store),
 * the placeholders, AIRLOCK_SESSION. A name given twice (a placeholder named like a proxy
 * variable) takes its later value, as a shell or Docker would.
 */
export function clientEnv(o: ClientEnvOptions): [string, string][] {
  const noProxy = o.noProxy.join(',');
  return [
    ...PROXY_ENV_VARS.map((name): [string, string] => [name, o.proxyUrl]),
    ['NO_PROXY', noProxy],
    ['no_proxy', noProxy],
    // Node 24+ sends fetch() and http(s) requests through HTTP(S)_PROXY only when asked to.
    ['NODE_USE_ENV_PROXY', '1'],
    ...CA_ENV_VARS.map((name): [string, string] => [name, o.bundlePath]),
    ...CA_DIR_ENV_VARS.map((name): [string, string] => [name, posix.dirname(o.bundlePath)]),
    // The JVM splits JAVA_TOOL_OPTIONS at blanks: a path with one cannot be said there.
    ...(o.javaTrustStore === undefined || /\s/.test(o.javaTrustStore) ? [] : [['JAVA_TOOL_OPTIONS', javaTrustOptions(o.javaTrustStore)] as [string, string]]),
    ...Object.entries(o.placeholders ?? {}),
    ...(o.sessionId === undefined ? [] : [['AIRLOCK_SESSION', o.sessionId] as [string, string]]),
  ];
}

/** JVM options that make the JKS `store` the default trust store (a path without blanks). */
function javaTrustOptions(store: string): string {
  return `-Djavax.net.ssl.trustStore=${store} -Djavax.net.ssl.trustStoreType=JKS -Djavax.net.ssl.trustStorePassword=changeit`;
}
