// What the minting and signing sources (GitHub App tokens, AWS keys) share: the start error, the
// error a session is shown when a credential cannot be had, and a bounded retry.
import { CredentialUnavailable } from './broker.js';

/** A secret source that cannot be used at start: the user's to fix (the CLI prints it as a usage error). */
export class SecretSourceError extends Error {}

/**
 * A minting source that failed (502 for the session, with a message naming the credential and
 * the fix); `transient` failures (network, 5xx) are worth another try, a wrong key or a 404 not.
 */
export class MintingFailed extends CredentialUnavailable {
  constructor(
    operatorMessage: string,
    readonly credential: string,
    sessionMessage: string,
    readonly transient: boolean,
  ) {
    super(502, sessionMessage, operatorMessage);
  }
}

export interface RetryOptions {
  readonly attempts: number;
  /** Delay before the second attempt; each further one doubles it. */
  readonly firstDelayMs: number;
}

export const DEFAULT_RETRY: RetryOptions = Object.freeze({ attempts: 3, firstDelayMs: 300 });

/** Runs `attempt` until it succeeds, fails for good (not transient) or runs out of attempts. */
export async function withRetry<T>(attempt: () => Promise<T>, options: RetryOptions = DEFAULT_RETRY): Promise<T> {
  let delay = options.firstDelayMs;
  for (let i = 1; ; i++) {
    try {
      return await attempt();
    } catch (err) {
      const transient = !(err instanceof MintingFailed) || err.transient;
      if (!transient || i >= options.attempts) throw err;
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay *= 2;
    }
  }
}
