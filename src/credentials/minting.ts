// What credential sources that talk to a token service on the host share: the HTTPS call they
// make (the proxy's own upstream client, so --resolve, --upstream-ca and the destination guard
// apply to it as to any request), the error a session is shown when a credential cannot be had,
// and a bounded retry.

/** A secret source that cannot be used at start: the user's to fix (the CLI prints it as a usage error). */
export class SecretSourceError extends Error {}

/** One HTTPS request made by the proxy itself (never by a session). */
export interface HostRequest {
  readonly url: string;
  readonly method: 'GET' | 'POST';
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: string;
}

export interface HostResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** The body, cut at a bound (token answers are small). */
  readonly body: string;
}

export type HostFetch = (request: HostRequest) => Promise<HostResponse>;

/** Set by the runtime; without it a source that needs the network says so when first used. */
export const NO_HOST_FETCH: HostFetch = () => Promise.reject(new Error('no host-side HTTPS client was configured for minting credentials'));

/**
 * A credential that cannot be had right now. `sessionMessage` is safe to show the session (it
 * names the credential and the fix, never a value); `message` is the operator's (proxy log).
 */
export class CredentialUnavailable extends Error {
  constructor(
    message: string,
    readonly credential: string,
    readonly sessionMessage: string,
    /** A failure worth trying again (network, 5xx), as opposed to a wrong key or a 404. */
    readonly transient: boolean,
  ) {
    super(message);
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
      const transient = !(err instanceof CredentialUnavailable) || err.transient;
      if (!transient || i >= options.attempts) throw err;
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay *= 2;
    }
  }
}
