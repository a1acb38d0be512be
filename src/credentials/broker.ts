// The credential broker's contract with the proxy. The proxy calls it on every request it
// forwards; the broker decides whether a placeholder may be swapped for its real secret.
import type { Duplex } from 'node:stream';
import type { ChunkScrubber, Replacement } from './replace-stream.js';

export interface OutgoingRequest {
  readonly scheme: 'http' | 'https';
  readonly host: string;
  readonly port: number;
  /** Path plus query, as it will be sent upstream. */
  readonly pathWithQuery: string;
  /** Flat [name, value, name, value, ...] list, hop-by-hop headers already removed. */
  readonly headers: string[];
  readonly contentType: string | undefined;
  /** The request method (signing credentials cover it). */
  readonly method?: string;
  /**
   * Reads the whole request body, up to maxBytes (rejects past it), for a credential that must
   * hash it (SigV4); after a read the swap hands the body back in SwapResult.body.
   */
  readonly readBody?: (maxBytes: number) => Promise<Buffer>;
}

/** OutgoingRequest.readBody's refusal of a body past its bound. */
export class BodyTooLarge extends Error {}

/**
 * A credential that signs requests instead of being swapped into them (AWS SigV4): the session
 * signs with placeholders, the proxy signs again with the real keys.
 */
export interface RequestSigner {
  /** The session's values for the credential's env vars (key id placeholder, secret placeholder). */
  sessionEnv(names: readonly string[], placeholder: string): Record<string, string>;
  /**
   * Signs `request` again if it carries the placeholder; null if it does not. `refusal` says why
   * the request's host may not have this credential (it is then refused if it carries it).
   */
  resign(request: OutgoingRequest, placeholder: string, refusal: string | null): Promise<SignOutcome | null>;
}

export type SignOutcome =
  | {
      readonly kind: 'signed';
      readonly headers: string[];
      /** The body as read for hashing, to be sent as is (absent: the body streams untouched). */
      readonly body?: Buffer;
      /** Looks at the response head; returns a problem for the operator (e.g. clock skew), or null. */
      readonly onResponse?: (status: number, headers: Readonly<Record<string, string | string[] | undefined>>) => string | null;
    }
  | { readonly kind: 'refused'; readonly where: string; readonly why: string };

export type SwapResult =
  | {
      readonly kind: 'forward';
      readonly pathWithQuery: string;
      readonly headers: string[];
      /** Names of credentials swapped in. */
      readonly used: readonly string[];
      /** Rewrites the request body (opt-in body swapping), or null to stream it untouched. */
      readonly bodyTransform: Duplex | null;
      /**
       * Exact values this swap wrote (e.g. the base64 of "user:secret" in Basic credentials) with
       * what the session had sent: an echo of them is turned back into the session's own value.
       */
      readonly echoes: readonly Replacement[];
      /** A body the swap read (to sign it): sent instead of the client's stream. */
      readonly body?: Buffer;
      /** A look at the response head by a signing credential: a problem to log and audit, or null. */
      readonly onResponse?: (status: number, headers: Readonly<Record<string, string | string[] | undefined>>) => string | null;
    }
  | {
      /**
       * The proxy answers this request itself (a token endpoint the credential's source stands in
       * for): nothing is forwarded. The caller reads the body (at most maxBytes) and sends what
       * answer() gives. `admit` is called before the host side sends anything upstream for it (a
       * refresh), to write the exchange's admit line first; false: send nothing.
       */
      readonly kind: 'answer';
      readonly credential: string;
      readonly maxBytes: number;
      answer(body: Buffer, admit: () => boolean): Promise<HostAnswer>;
    }
  | {
      readonly kind: 'misuse';
      readonly credential: string;
      /** Where the placeholder was found: "header authorization", "query", ... */
      readonly where: string;
      readonly why: string;
    };

/** The proxy's own answer to a request a credential stands in for. */
export interface HostAnswer {
  readonly status: number;
  /** Sent as JSON. */
  readonly body: unknown;
  /** Set when the request is refused (audited as a denial for this reason). */
  readonly refused?: { readonly reason: 'credential_misuse' | 'upstream_error' | 'bad_request'; readonly detail: string };
  /** For the audit line's detail when answered. */
  readonly detail: string;
  /** For the operator's log: why the host side failed (never a secret). */
  readonly error?: string;
}

/** A file the session gets (placeholders only), relative to the session user's home. */
export interface SessionFile {
  readonly path: string;
  readonly content: string;
  readonly mode: number;
  /** A JSON object merged into the file when the image already has one, instead of replacing it. */
  readonly mergeJson?: boolean;
}

/**
 * A credential that cannot be used right now, with a message meant for the session: it names the
 * credential and the fix, never a value. `status` is what the session gets (401 when the host's
 * login was refused, 502 when the token endpoint failed).
 */
export class CredentialUnavailable extends Error {
  constructor(
    readonly status: 401 | 502,
    readonly sessionMessage: string,
    operatorMessage: string,
  ) {
    super(operatorMessage);
  }
}

export interface ResponseScrub {
  readonly headers: Record<string, string | string[]>;
  /** For an encoded body: decodes it and replaces echoed secrets (a stream, for the decoder). */
  readonly bodyTransform: Duplex | null;
  /** For an identity-encoded body: replaces echoed secrets chunk by chunk. */
  readonly scrubChunks: ChunkScrubber | null;
  /**
   * Scrubs a whole (identity-encoded) body at once, so a small response can keep an exact
   * Content-Length and leave in one write; null when the body must be decoded first.
   */
  readonly scrubWhole: ((body: Buffer) => Buffer) | null;
  /**
   * Scrubs consecutive messages (WebSocket) as one text, returning each one's part, so a secret
   * split between them is found (see Replacer.replaceAcross); null when the body must be decoded
   * first.
   */
  readonly scrubAcross: ((parts: readonly Buffer[], found?: { part: number; end: number }[]) => Buffer[]) | null;
  /** Set when the body cannot be scrubbed (an encoding the proxy cannot decode): refuse it. */
  readonly refuse?: string;
}

export interface CredentialBroker {
  /** Placeholder values for the session's environment, by variable name. */
  readonly sessionEnv: Readonly<Record<string, string>>;
  /** Variables that hold real secrets on the host and must not reach the session. */
  readonly secretSourceEnv: readonly string[];
  /** True when no credential is configured: the proxy skips the broker entirely. */
  readonly empty: boolean;
  /**
   * Names of the variables of `env` that hold one of the real secrets, as is or encoded (see
   * holdsSecret): copies under other names than the sources, to be kept from the session too.
   * Resolves every secret first, so file and command secrets count; rejects as a secret source
   * does, naming the credential and never the value.
   */
  variablesHoldingSecrets(env: Readonly<Record<string, string | undefined>>): Promise<string[]>;
  /**
   * `beforeUpstream(credential)` runs just before a secret source sends a request of its own
   * upstream for this one (a Claude login refreshed on the host), so the exchange is admitted in
   * the audit first; false: nothing is sent and the swap fails.
   */
  swapRequest(request: OutgoingRequest, beforeUpstream?: (credential: string) => boolean): Promise<SwapResult>;
  /** Called once when the session ends (revokes what was minted for it); never throws. */
  close?(): Promise<void>;
  /** Files the session gets (a placeholder login store, say); none when absent. */
  readonly sessionFiles?: readonly SessionFile[];
  /** Scrubs echoed secrets from a response; null when the host can hold no secret. */
  scrubResponse(response: ResponseToScrub): ResponseScrub | null;
}

export interface ResponseToScrub {
  readonly host: string;
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly hasBody: boolean;
  /** Called once if anything was replaced (headers or body). */
  readonly onScrub: () => void;
  /** The request's own swap echoes (SwapResult.echoes). */
  readonly echoes?: readonly Replacement[];
}

/** The broker of a session without credentials. */
export const NO_CREDENTIALS: CredentialBroker = Object.freeze({
  sessionEnv: Object.freeze({}),
  secretSourceEnv: Object.freeze([]) as readonly string[],
  empty: true,
  variablesHoldingSecrets: async () => [],
  swapRequest: async (request: OutgoingRequest): Promise<SwapResult> => ({
    kind: 'forward',
    pathWithQuery: request.pathWithQuery,
    headers: request.headers,
    used: [],
    bodyTransform: null,
    echoes: [],
  }),
  scrubResponse: () => null,
});
