// The body of a GraphQL request a github: rule let through (decision.graphql), read whole before
// anything is forwarded: at most MAX_GRAPHQL_BYTES, then decided by decideGraphql(). What is
// forwarded is byte for byte what was read. A refusal is answered in GraphQL's own error shape,
// which gh and other clients print.
import { Readable } from 'node:stream';
import { readBounded } from './body.js';
import { bodyCoding } from './headers.js';
import { decideGraphql, type GraphqlTarget } from '../policy/index.js';
import type { Exchange } from './exchange.js';

/** Far above any real GraphQL request; the body is held in memory while it is decided. */
export const MAX_GRAPHQL_BYTES = 1024 * 1024;

/**
 * Reads and decides a GraphQL request body; `then` runs with the body to forward, unless the
 * request was refused (answered and audited by the exchange).
 */
export function checkGraphql(
  ex: Exchange,
  target: GraphqlTarget,
  body: Readable | null,
  rawHeaders: readonly string[],
  then: (body: Readable | null) => void,
): void {
  ex.denyInGraphql();
  let over = false;
  // A body cut off after a refusal (the client's connection closed) is no failure of the exchange.
  body?.on('error', (err: Error) => {
    if (!over) ex.fail(err);
    over = true;
  });
  const label = ex.rule ?? 'the policy';
  const refuse = (status: number, message: string, detail: string) => {
    over = true;
    ex.refuse(status, status === 403 ? 'graphql_not_allowed' : 'bad_request', message, detail);
  };
  if (bodyCoding(rawHeaders) !== undefined) {
    return refuse(415, 'Airlock: a GraphQL request body must be sent uncompressed to be checked.', 'graphql: compressed body');
  }
  // Each Content-Length on its own: a joined "5, 5" is no number, and must not skip the check.
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() === 'content-length' && Number(rawHeaders[i + 1]!.trim()) > MAX_GRAPHQL_BYTES) {
      return refuse(413, `Airlock: a GraphQL request body may be at most ${MAX_GRAPHQL_BYTES} bytes.`, 'graphql: body too large');
    }
  }
  const decideOn = (bytes: Buffer) => {
    const verdict = decideGraphql(bytes.toString('utf8'), target.mutations, label);
    if (!verdict.ok) {
      if (ex.policy.mode === 'enforce') return refuse(403, `${verdict.message}. Ask the operator to extend the rule's github: block.`, verdict.detail);
      ex.overrule('would_deny', 'graphql_not_allowed', verdict.detail);
    } else {
      ex.note(verdict.detail);
    }
    then(body ? Readable.from([bytes]) : null);
  };
  if (!body) return decideOn(Buffer.alloc(0));
  readBounded(body, MAX_GRAPHQL_BYTES, {
    done: (bytes) => {
      if (!over) decideOn(bytes);
    },
    tooLarge: () => refuse(413, `Airlock: a GraphQL request body may be at most ${MAX_GRAPHQL_BYTES} bytes.`, 'graphql: body too large'),
    failed: () => {}, // answered by the error handler above
  });
}
