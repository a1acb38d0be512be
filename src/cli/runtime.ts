// The embedded proxy of `airlock exec`, `airlock proxy` and `airlock run`: the flags that configure
// it, declared once, and the ProxyRuntime built from them.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { ProxyRuntime } from '../sessions/runtime.js';
import type { RuntimeOptions } from '../sessions/runtime.js';
import { credentialsFactory } from '../credentials/sources.js';
import { checkCidrs, contextRoots, parseResolve, upstreamRoots, UsageError } from './config.js';
import { POLICY_FILES } from './policy-files.js';
import { ControlSockets } from './control.js';
import { AuditExports, parseExportTarget } from '../audit/export.js';

/** The --audit-export targets; lost lines are reported in the proxy log and on stderr. */
function auditExports(values: readonly string[], log: pino.Logger): AuditExports {
  const targets = values.map((v) => {
    try {
      return parseExportTarget(v);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
  });
  return new AuditExports(targets, (target, dropped, total) => {
    log.warn({ target, dropped, total }, 'audit export dropped lines');
    process.stderr.write(`airlock: audit export to ${target} dropped ${dropped} line(s) (${total} in all): it is down or too slow\n`);
  });
}

// Declared in proxy-flags.ts, which loads nothing of the proxy: main.ts declares every command with it.
export { addProxyFlags } from './proxy-flags.js';
export type { ProxyFlags, ProxyFlagsHelp } from './proxy-flags.js';
import type { ProxyFlags } from './proxy-flags.js';

export interface BuildRuntimeOptions extends ProxyFlags {
  readonly caKey?: 'ec' | 'rsa';
  /** Where the proxy logs; default: proxy.log in the state dir. */
  readonly log?: pino.Logger;
  /** Connection limits, worked out once the state dir and the log exist. */
  readonly limits?: (log: pino.Logger) => RuntimeOptions['limits'];
  /**
   * An embedded proxy's sessions follow this policy file (reload; watched unless `watch` is
   * false) and answer the operator commands on their control socket.
   */
  readonly follow?: { readonly file: string; readonly watch: boolean };
}

/**
 * Reads --upstream-ca, creates the state dir and the log, works out the limits, then checks
 * --resolve and --allow-private, and builds the runtime; secrets come from this process's
 * environment. (This order is the daemon's: a bad --resolve is reported after its open-file
 * limit line, as it always was.)
 */
export function buildRuntime(o: BuildRuntimeOptions): { runtime: ProxyRuntime; log: pino.Logger } {
  const roots = upstreamRoots(o.upstreamCa);
  // Undefined: Node's default store, the same roots without parsing them again (contextRoots).
  const contextCa = contextRoots(o.upstreamCa, roots);
  mkdirSync(o.stateDir, { recursive: true, mode: 0o700 });
  const log = o.log ?? pino({ base: null }, pino.destination({ dest: join(o.stateDir, 'proxy.log'), mkdir: true, sync: true }));
  const limits = o.limits?.(log);
  const controls = new ControlSockets(() => runtime, () => log);
  const exports = auditExports(o.auditExport ?? [], log);
  const runtime: ProxyRuntime = new ProxyRuntime({
    limits,
    stateDir: o.stateDir,
    trustRoots: roots,
    upstreamCa: contextCa ?? [],
    resolve: parseResolve(o.resolve),
    log,
    caKeyType: o.caKey,
    // Token endpoints (a login's refresh, Google's tokens) are reached like upstreams.
    credentials: credentialsFactory(process.env, { ca: contextCa, resolve: parseResolve(o.resolve) }, (message) => log.error(message)),
    allowPrivate: checkCidrs(o.allowPrivate),
    audit: auditSettings(o),
    policyFiles: POLICY_FILES,
    onCreate: (session) => {
      exports.attach(session.audit);
      if (!o.follow) return;
      runtime.policies.follow(session, o.follow.file, o.follow.watch);
      controls.open(session);
    },
    onClose: () => exports.close(),
    onRemove: o.follow ? (id) => controls.close(id) : undefined,
  });
  return { runtime, log };
}

/** --audit-rotate-size (bytes, or with a K/M/G suffix) and --audit-retain (a count). */
export function auditSettings(o: Pick<ProxyFlags, 'auditRotateSize' | 'auditRetain'>): { rotateBytes?: number; retainFiles?: number } {
  const out: { rotateBytes?: number; retainFiles?: number } = {};
  if (o.auditRotateSize !== undefined) {
    const m = /^(\d{1,12})([KMG]i?B?)?$/i.exec(o.auditRotateSize.trim());
    if (!m) throw new UsageError(`--audit-rotate-size ${JSON.stringify(o.auditRotateSize)}: give bytes, or a number with K, M or G (e.g. 64M)`);
    const unit = { '': 1, k: 1 << 10, m: 1 << 20, g: 1 << 30 }[(m[2] ?? '').charAt(0).toLowerCase() as '' | 'k' | 'm' | 'g'];
    out.rotateBytes = Number(m[1]) * unit;
    if (out.rotateBytes !== 0 && out.rotateBytes < 4096) throw new UsageError('--audit-rotate-size: at least 4K (or 0 to never rotate)');
  }
  if (o.auditRetain !== undefined) {
    if (!/^\d{1,6}$/.test(o.auditRetain.trim())) throw new UsageError(`--audit-retain ${JSON.stringify(o.auditRetain)}: give a number of files (0: keep all)`);
    out.retainFiles = Number(o.auditRetain);
  }
  return out;
}
