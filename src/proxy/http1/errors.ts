// Errors of the HTTP/1 wing, by code: the proxy maps each code to the status the client gets.

export class Http1Error extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

/** Codes of an upstream that took too long (answered 504). */
export const TIMEOUT_CODES: ReadonlySet<string> = new Set(['ETIMEDOUT', 'UPSTREAM_HEADERS_TIMEOUT', 'UPSTREAM_BODY_TIMEOUT']);
