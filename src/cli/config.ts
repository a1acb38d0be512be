// The config loader: the one place (with the CLI) that reads files and the environment. It turns
// paths and flags into the typed values the rest of Airlock takes.
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import tls from 'node:tls';
import { isIP } from 'node:net';
import type { Endpoint } from '../proxy/upstream.js';
import { parseCidr } from '../proxy/destination.js';
import { parseDocument, isMap, isSeq } from 'yaml';
import { Option } from 'commander';
import { normalizeHost, parseAllowEntry, parsePolicy } from '../policy/index.js';
import type { CompatProfile, Policy } from '../policy/index.js';

export class UsageError extends Error {}

export function loadPolicy(file: string): Policy {
  return loadPolicyText(file).policy;
}

/** The policy and the text it was read from (for a daemon, which parses it again). */
export function loadPolicyText(file: string): { policy: Policy; text: string } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read policy ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return { policy: parsePolicy(text, file), text };
}

/** The policy `--allow` starts from when no --policy is given: nothing allowed, no credentials. */
const COMMAND_LINE_POLICY = 'version: 1\nname: command-line\nallow: []\n';

/**
 * The policy of `airlock run`: --policy FILE (or none), plus a rule for each --allow HOST[:PORT]
 * (Cloche's network_allow, without YAML) and, with --compat, that launcher's placeholders for the
 * credentials that set none themselves. Returns the text too: a daemon parses it again.
 */
export function loadRunPolicy(file: string | undefined, allow: readonly string[], compat: CompatProfile | undefined): { policy: Policy; text: string } {
  if (file === undefined && allow.length === 0) {
    throw new UsageError('airlock run needs --policy FILE, or --allow HOST for each host the session may reach (repeatable)');
  }
  const base = file === undefined ? { policy: parsePolicy(COMMAND_LINE_POLICY, '--allow'), text: COMMAND_LINE_POLICY } : loadPolicyText(file);
  const entries = allow.map((raw) => {
    const entry = parseAllowEntry(raw);
    if (!entry.ok) throw new UsageError(`--allow ${raw}: ${entry.problem}. ${entry.hint}`);
    return entry;
  });
  if (entries.length === 0 && compat === undefined) return base;
  // Edited as a YAML document, so the file's own text (comments included) is what the daemon gets.
  const doc = parseDocument(base.text);
  if (entries.length > 0 && !isSeq(doc.get('allow'))) doc.set('allow', doc.createNode([]));
  for (const { host, port } of entries) doc.addIn(['allow'], doc.createNode(port === null ? { host } : { host, ports: [port] }));
  const credentials = doc.get('credentials');
  if (compat && isSeq(credentials)) {
    for (const item of credentials.items) {
      if (!isMap(item)) continue;
      const wanted = compat.credentials[String(item.get('preset'))];
      if (!wanted) continue;
      if (!item.has('placeholder')) item.set('placeholder', wanted.placeholder);
      if (!item.has('env')) item.set('env', doc.createNode([...wanted.env]));
    }
  }
  const text = doc.toString();
  return { policy: parsePolicy(text, file ?? '--allow'), text };
}

export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.AIRLOCK_STATE_DIR) return resolvePath(env.AIRLOCK_STATE_DIR);
  const base = env.XDG_STATE_HOME || join(homedir(), '.local', 'state');
  return join(base, 'airlock');
}

/**
 * --state-dir, absolute once parsed: the state dir is also a bind-mount source for `run`, which
 * Docker takes for a volume name when it is relative.
 */
export function stateDirOption(description: string, defaultDescription?: string): Option {
  return new Option('--state-dir <dir>', description).default(defaultStateDir(), defaultDescription).argParser((dir: string) => resolvePath(dir));
}

/**
 * Parses curl-style --resolve entries, HOST:PORT:ADDR, into "host:port" → endpoint. ADDR may end
 * in :PORT2 (IPv6 in brackets) to dial another port, like curl's --connect-to.
 */
export function parseResolve(entries: readonly string[]): Map<string, Endpoint> {
  const map = new Map<string, Endpoint>();
  for (const entry of entries) {
    const match = /^([^:]+):(\d{1,5}):(?:\[([^\]]+)\]|([^:\[\]]+)|([0-9a-fA-F:]+))(?::(\d{1,5}))?$/.exec(entry);
    const host = match ? normalizeHost(match[1]!) : null;
    const address = match ? (match[3] ?? match[4] ?? match[5] ?? '') : '';
    if (!match || !host || isIP(address) === 0) {
      throw new UsageError(
        `--resolve ${JSON.stringify(entry)}: expected HOST:PORT:ADDRESS[:PORT], e.g. api.github.com:443:127.0.0.1 or api.github.com:443:127.0.0.1:8443`,
      );
    }
    const port = Number(match[2]);
    map.set(`${host}:${port}`, { address, port: match[6] ? Number(match[6]) : port });
  }
  return map;
}

function readPemFile(file: string, what: string): string {
  try {
    const text = readFileSync(file, 'utf8');
    if (!text.includes('-----BEGIN CERTIFICATE-----')) throw new UsageError(`${what} ${file} holds no PEM certificate`);
    return text;
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(`cannot read ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/**
 * Roots for upstream TLS: Node's bundled roots, NODE_EXTRA_CA_CERTS and --upstream-ca files.
 * (Passing `ca` replaces Node's defaults, so the extra file must be added back by hand.)
 */
export function upstreamRoots(extraFiles: readonly string[], env: NodeJS.ProcessEnv = process.env): string[] {
  const roots = [...tls.rootCertificates];
  if (env.NODE_EXTRA_CA_CERTS) {
    try {
      roots.push(readFileSync(env.NODE_EXTRA_CA_CERTS, 'utf8'));
    } catch {
      // Node itself only warns about an unreadable NODE_EXTRA_CA_CERTS; do the same by ignoring it.
    }
  }
  for (const file of extraFiles) roots.push(readPemFile(file, '--upstream-ca'));
  return roots;
}

/**
 * The roots Airlock's own TLS contexts are made with (upstreams, token endpoints), or undefined
 * for Node's default store. Without an --upstream-ca file that store holds what upstreamRoots()
 * lists (Node's bundled roots and NODE_EXTRA_CA_CERTS; under --use-openssl-ca, OpenSSL's roots,
 * which Node then trusts by default), and Node builds it once per process, at start when
 * NODE_EXTRA_CA_CERTS is set, where a context made from the same roots as text parses every
 * certificate again: ~70-100 ms of CPU for Node's roots and a system bundle, before a session's
 * first upstream TLS connection. With a file, the roots as text (Node cannot add to its store).
 */
export function contextRoots(extraFiles: readonly string[], roots: readonly string[]): readonly string[] | undefined {
  return extraFiles.length === 0 ? undefined : roots;
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** Validates --allow-private ranges up front, so a typo is a usage error, not a silent gap. */
export function checkCidrs(cidrs: readonly string[]): string[] {
  for (const cidr of cidrs) {
    try {
      parseCidr(cidr);
    } catch (err) {
      throw new UsageError(`--allow-private: ${(err as Error).message}`);
    }
  }
  return [...cidrs];
}

/** ADDRESS:PORT of a listener flag ([v6]:port for IPv6). */
export function parseListen(listen: string, flag = '--listen'): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(listen);
  if (!match) throw new UsageError(`${flag} ${JSON.stringify(listen)}: expected ADDRESS:PORT, e.g. 127.0.0.1:8080`);
  return { host: match[1] ?? match[2]!, port: Number(match[3]) };
}
