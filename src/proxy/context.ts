// What the proxy needs to know about sessions. The sessions module implements these; the proxy
// never reaches into session storage itself (imports flow sessions → proxy).
import type { Policy } from '../policy/index.js';
import type { SessionCa } from '../ca/session-ca.js';
import type { AuditLog } from '../audit/log.js';
import type { CredentialBroker } from '../credentials/broker.js';

export interface ProxySession {
  readonly id: string;
  readonly policy: Policy;
  readonly ca: SessionCa;
  /**
   * The CA whose leaves carry only the proxy's own answers: refusals of denied hosts and the
   * in-session endpoint. It can never issue for a host the session may reach. Absent: denied
   * HTTPS hosts get the bare CONNECT refusal.
   */
  readonly notice?: SessionCa | null;
  readonly audit: AuditLog;
  readonly credentials: CredentialBroker;
}

export interface SessionDirectory {
  /**
   * The session a Proxy-Authorization header authenticates, or null. `listener` names the
   * listener the request came in on, so sessions bound to one listener cannot be used from another.
   */
  authenticate(proxyAuthorization: string | undefined, listener: string): ProxySession | null;
  /**
   * The session a listener belongs to when only that session may use it (a Docker session's
   * gateway listener), else null: its connections count against that session before they
   * authenticate.
   */
  ownerOf(listener: string): ProxySession | null;
}
/** Files an access request in the operator's inbox (the sessions implement it); the message is for the agent. */
export type RequestAccess = (
  sessionId: string,
  input: { host?: unknown; port?: unknown; method?: unknown; path?: unknown; reason?: unknown },
) => { readonly ok: true; readonly id: string } | { readonly ok: false; readonly message: string };

