// Builds each session's credential broker from the policy, reading secrets from their sources.
import type { Policy } from '../policy/index.js';
import type { CredentialBroker } from '../credentials/broker.js';
import { NO_CREDENTIALS } from '../credentials/broker.js';

export function credentialsFactory(_env: NodeJS.ProcessEnv): (policy: Policy, sessionId: string) => Promise<CredentialBroker> {
  return async (policy) => {
    if (policy.credentials.length === 0) return NO_CREDENTIALS;
    throw new Error('credentials are not supported yet');
  };
}
