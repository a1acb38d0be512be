// The environment a session's command gets: the proxy, the CA bundle under every name common
// clients read, credential placeholders, and none of the host's secrets: not their source
// variables, nor any other variable holding a copy of one.
import type { Session } from '../sessions/session.js';
import { clientEnv, SHADOWING_CA_VARS, SHADOWING_PROXY_VARS } from '../sessions/client-env.js';

/**
 * @param withheld variables of `base` that hold a secret (the broker's variablesHoldingSecrets);
 *   a placeholder variable among them still gets its placeholder.
 */
export function sessionEnv(
  base: NodeJS.ProcessEnv,
  session: Session,
  proxy: string,
  bundlePath: string,
  noProxy: readonly string[],
  withheld: readonly string[],
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...base };
  for (const name of session.credentials.secretSourceEnv) delete env[name];
  for (const name of withheld) delete env[name];
  // Variables the user had set to something else must not shadow the proxy (e.g. ALL_PROXY) or
  // the session's CA bundle (an inline npm `ca`).
  for (const name of [...SHADOWING_PROXY_VARS, ...SHADOWING_CA_VARS]) delete env[name];
  // The placeholders replace the user's variables of their names; the client variables go over them.
  Object.assign(env, session.credentials.sessionEnv);
  const inheritedJava = env.JAVA_TOOL_OPTIONS;
  Object.assign(env, Object.fromEntries(clientEnv({ proxyUrl: proxy, noProxy, bundlePath, javaTrustStore: session.javaTrustStorePath, sessionId: session.id })));
  // The caller's JVM options stay; the session's trust store options come last, which the JVM keeps.
  if (inheritedJava?.trim()) env.JAVA_TOOL_OPTIONS = `${inheritedJava.trim()} ${env.JAVA_TOOL_OPTIONS}`;
  return env;
}

/**
 * One line for stderr about variables kept from a session because they hold a secret: their names,
 * never their values. Source variables are not listed (dropping them is the documented rule), nor
 * ones the session sets itself (a placeholder replaces the copy).
 */
export function withheldNotice(names: readonly string[], from: string): string {
  if (names.length === 0) return '';
  const hold = names.length === 1 ? 'its value holds' : 'their values hold';
  return `airlock: withheld ${names.join(', ')} from ${from}: ${hold} a real secret of the policy's credentials (as is or encoded), which only the proxy may send\n`;
}
