// `airlock exec`: an embedded proxy on loopback, one fresh session, one command run through it.
import { spawn } from 'node:child_process';
import { resolve as resolvePath } from 'node:path';
import { proxyUrl } from '../sessions/registry.js';
import { HOST_NO_PROXY } from '../sessions/client-env.js';
import type { Session } from '../sessions/session.js';
import { loadPolicy } from './config.js';
import { sessionEnv, withheldNotice } from './session-env.js';
import { formatTally } from '../audit/report.js';
import { buildRuntime } from './runtime.js';
import { agentNoteLine, appendAgentNotes } from './agent-notes.js';
import type { ProxyFlags } from './runtime.js';

export interface ExecOptions extends ProxyFlags {
  readonly policy: string;
  readonly caKey?: 'ec' | 'rsa';
  /** Append the note on airlock.internal to this file (the agent's instructions). */
  readonly agentNotes?: string;
}

export async function runExec(command: string[], options: ExecOptions): Promise<number> {
  const policy = loadPolicy(options.policy);
  if (options.agentNotes) appendAgentNotes(resolvePath(options.agentNotes));
  // The command runs as this user and could edit the file too: exec is not the isolated mode.
  const { runtime, log } = buildRuntime({ ...options, follow: { file: resolvePath(options.policy), watch: true } });
  const session = await runtime.sessions.create(policy);
  // Resolves every credential's secret now (commands run, files are read): any host variable
  // holding a copy of one, under whatever name, stays out of the command's environment.
  const withheld = await session.credentials.variablesHoldingSecrets(process.env);
  const address = await runtime.proxy.listen('127.0.0.1', 0);
  const env = sessionEnv(process.env, session, proxyUrl(session, '127.0.0.1', address.port), session.bundlePath, HOST_NO_PROXY, withheld);
  const sources = session.credentials.secretSourceEnv;
  process.stderr.write(agentNoteLine());
  process.stderr.write(withheldNotice(withheld.filter((name) => env[name] === undefined && !sources.includes(name)), "the command's environment"));

  const child = spawn(command[0]!, command.slice(1), { stdio: 'inherit', env });
  // The upstream roots (~50 ms) and the leaf certificate machinery (the ASN.1 library, ~100 ms)
  // load while the command starts, not before it: usually ahead of its first request, and never
  // for a command that is done by then.
  const prepare = setTimeout(() => {
    runtime.upstream.prepare();
    session.ca.prepare();
  }, 20);
  child.once('exit', () => clearTimeout(prepare));
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, forward);
  const code = await new Promise<number>((resolveExit) => {
    child.once('error', (err: NodeJS.ErrnoException) => {
      process.stderr.write(`airlock: cannot run ${command[0]}: ${err.code === 'ENOENT' ? 'command not found' : err.message}\n`);
      resolveExit(127);
    });
    child.once('exit', (status, signal) => resolveExit(status ?? 128 + (signal ? signalNumber(signal) : 1)));
  });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.off(signal, forward);
  // Close first: connections still open end now and are counted in the summary.
  await runtime.close();
  const summary = summarise(session);
  log.flush();
  process.stderr.write(summary);
  return code;
}

function signalNumber(signal: NodeJS.Signals): number {
  const numbers: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 };
  return numbers[signal] ?? 1;
}

/** One line: allowed and denied requests per host, and where the full log is. */
export function summarise(session: Session): string {
  return `airlock: session ${session.id}: ${formatTally(session.audit.tally, 'outcome')}; audit: ${session.audit.file}\n`;
}
