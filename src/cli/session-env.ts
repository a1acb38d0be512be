// The environment a session's command gets: the proxy, the CA bundle under every name common
// clients read, credential placeholders, and none of the host's secret sources.
import type { Session } from '../sessions/session.js';

import { CA_ENV_VARS } from '../sessions/client-env.js';

export { CA_ENV_VARS };

export function sessionEnv(
  base: NodeJS.ProcessEnv,
  session: Session,
  proxy: string,
  bundlePath: string,
  noProxy: string,
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...base };
  for (const name of session.credentials.secretSourceEnv) delete env[name];
  // Variables the user had set to something else must not shadow the proxy (e.g. ALL_PROXY).
  for (const name of ['ALL_PROXY', 'all_proxy']) delete env[name];
  Object.assign(env, session.credentials.sessionEnv);
  for (const name of ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy']) env[name] = proxy;
  env.NO_PROXY = env.no_proxy = noProxy;
  for (const name of CA_ENV_VARS) env[name] = bundlePath;
  env.AIRLOCK_SESSION = session.id;
  return env;
}
