// The flags of the embedded proxy (`airlock exec`, `airlock proxy`, `airlock run`), declared once.
// Apart from runtime.ts, which builds the proxy from them, so that declaring the commands loads
// nothing of the proxy.
import type { Command, Option } from 'commander';
import { collect } from './config.js';

/** The shared flags, as commander hands them over. */
export interface ProxyFlags {
  readonly stateDir: string;
  readonly resolve: string[];
  readonly upstreamCa: string[];
  readonly allowPrivate: string[];
  /** --audit-rotate-size and --audit-retain, as given. */
  readonly auditRotateSize?: string;
  readonly auditRetain?: string;
  /** --audit-export targets (absent on commands that build no proxy of their own). */
  readonly auditExport?: string[];
}

export interface ProxyFlagsHelp {
  /** --state-dir, as the command documents it. */
  readonly stateDir: Option;
  /** Where the flags apply, added to each one's help, e.g. "embedded proxy only". */
  readonly scope?: string;
  /** What --resolve works like, e.g. "like curl". */
  readonly resolveLike?: string;
}

/** Declares --state-dir, --resolve, --upstream-ca and --allow-private on `command`, in that order. */
export function addProxyFlags(command: Command, help: ProxyFlagsHelp): Command {
  const scope = help.scope ? `; ${help.scope}` : '';
  const like = help.resolveLike ? `, ${help.resolveLike}` : '';
  return (
    command
      .addOption(help.stateDir)
      .option('--resolve <host:port:addr>', `connect to ADDR for HOST:PORT (repeatable${like}${scope})`, collect, [])
      // (The scoped help, airlock run's, has always left out "(PEM)".)
      .option('--upstream-ca <file>', `extra CA${help.scope ? '' : ' (PEM)'} trusted for upstream TLS (repeatable${scope})`, collect, [])
      .option('--allow-private <cidr>', `let upstreams resolve into this private range (repeatable${scope}; never this host's own addresses)`, collect, [])
      .option('--audit-rotate-size <size>', `rotate each session's audit log at this size, e.g. 64M (0: never; default 64M${scope})`)
      .option('--audit-retain <files>', `rotated audit files kept per session, oldest removed first (default 0: all${scope})`)
      .option('--audit-export <target>', `also send every audit line to stdout, unix:/path.sock (JSON lines) or otlp:http://host:4318 (OpenTelemetry logs) (repeatable${scope})`, collect, [])
  );
}
