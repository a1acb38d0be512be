// A request path as a lenient server may read it, for the few paths a credential must never reach
// or must always be answered on: a check on the path as sent would miss an encoded or re-cased
// spelling that such a server serves all the same.

/** Decoded (repeatedly), lower-cased, backslashes as slashes, ;params dropped, slashes merged; no query. */
export function loosePath(pathWithQuery: string): string {
  let path = pathWithQuery.split('?')[0]!;
  for (let i = 0; i < 4 && path.includes('%'); i++) path = path.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
  return path.toLowerCase().replace(/\\/g, '/').replace(/;[^/]*/g, '').replace(/\/{2,}/g, '/');
}
