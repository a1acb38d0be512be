// The environment every session client is configured through, in one place for exec, the daemon's
// exports and Docker: the proxy, the hosts that bypass it, the CA bundle under every name common
// clients read, the credential placeholders and the session id.

/** Variables common clients (OpenSSL, Node, Python requests, curl, git) read a CA bundle from. */
export const CA_ENV_VARS = ['SSL_CERT_FILE', 'NODE_EXTRA_CA_CERTS', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE', 'GIT_SSL_CAINFO'] as const;

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
  /** The CA bundle's path, as the client sees it. */
  readonly bundlePath: string;
  /** Credential placeholders by variable name; set after (over) the proxy and CA variables. */
  readonly placeholders?: Readonly<Record<string, string>>;
  /** Sets AIRLOCK_SESSION, last. */
  readonly sessionId?: string;
}

/**
 * The session's client variables, in the order they are set: the proxy variables, NO_PROXY and
 * no_proxy, the CA variables, the placeholders, AIRLOCK_SESSION. A name given twice (a placeholder
 * named like a proxy variable) takes its later value, as a shell or Docker would.
 */
export function clientEnv(o: ClientEnvOptions): [string, string][] {
  const noProxy = o.noProxy.join(',');
  return [
    ...PROXY_ENV_VARS.map((name): [string, string] => [name, o.proxyUrl]),
    ['NO_PROXY', noProxy],
    ['no_proxy', noProxy],
    ...CA_ENV_VARS.map((name): [string, string] => [name, o.bundlePath]),
    ...Object.entries(o.placeholders ?? {}),
    ...(o.sessionId === undefined ? [] : [['AIRLOCK_SESSION', o.sessionId] as [string, string]]),
  ];
}
