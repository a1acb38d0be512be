// Names every session client is configured through, in one place for exec, the daemon and Docker.

/** Variables common clients (OpenSSL, Node, Python requests, curl, git) read a CA bundle from. */
export const CA_ENV_VARS = ['SSL_CERT_FILE', 'NODE_EXTRA_CA_CERTS', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE', 'GIT_SSL_CAINFO'] as const;

/** Where a container session finds its trust bundle (copied in, never mounted). */
export const CA_PATH_IN_CONTAINER = '/etc/airlock/ca.pem';
