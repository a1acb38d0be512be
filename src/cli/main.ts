#!/usr/bin/env -S node --max-semi-space-size=2
// The airlock command line. Only this folder reads flags, files and the environment.
// The shebang caps V8's young generation at 2 MiB per semi-space: a proxy's garbage is many small
// short-lived objects, and the default (up to 16 MiB) only held ~20 MiB more RSS under load for no
// measurable throughput (bench/README.md).
import { readFileSync, existsSync, statSync, watchFile } from 'node:fs';
import { dirname, join, resolve as resolvePath } from 'node:path';
import { Command, Option } from 'commander';
import { formatBytes } from '../policy/index.js';
import { PolicyError } from '../policy/errors.js';
import type { Policy } from '../policy/index.js';
import type { AuditLine } from '../audit/report.js';
import type { SessionInfo } from '../sessions/admin.js';
import { loadPolicy, stateDirOption as stateDirFlag, UsageError } from './config.js';
import { addProxyFlags } from './proxy-flags.js';
import { LaunchError } from '../launcher/errors.js';
import { SecretSourceError } from '../credentials/minting.js';

// Start-up: each command's modules load in its action (`await import`), and the commands declared
// in other files are registered only when named on the command line (all of them for help, an
// unknown name or none), so `airlock exec` loads the proxy and nothing of the launcher, the
// daemon client or the live view (ARCHITECTURE.md, Start-up).
const named = process.argv.slice(2).find((arg) => !arg.startsWith('-'));
const KNOWN = ['exec', 'proxy', 'session', 'audit', 'policy', 'inbox', 'approve', 'deny', 'run', 'gc', 'ui', 'image', 'doctor'];
const wants = (...names: string[]) => named === undefined || !KNOWN.includes(named) || names.includes(named);

const program = new Command();
program
  .name('airlock')
  .description('Egress proxy and credential broker for AI coding-agent sessions')
  .version('0.1.0')
  .showHelpAfterError();

const stateDirOption = () => stateDirFlag('where sessions keep their audit logs and bundles', '$AIRLOCK_STATE_DIR or ~/.local/state/airlock');

addProxyFlags(
  program
    .command('exec')
    .description('run a command with all its HTTP(S) traffic through a fresh Airlock session')
    .requiredOption('--policy <file>', 'policy YAML file'),
  { stateDir: stateDirOption(), resolveLike: 'like curl' },
)
  .addOption(new Option('--ca-key <type>', 'session CA key type').choices(['ec', 'rsa']).default('ec'))
  .option('--agent-notes <file>', "append a short note on http://airlock.internal/ to the agent's instructions (e.g. CLAUDE.md, AGENTS.md)")
  .argument('<command...>', 'command and arguments (after --)')
  .action(async (command: string[], opts) => {
    const { runExec } = await import('./exec.js');
    process.exitCode = await runExec(command, opts);
  });

addProxyFlags(
  program
    .command('proxy')
    .description('run the long-running proxy daemon; manage its sessions with `airlock session`')
    .requiredOption('--policy <file>', 'default policy for new sessions')
    .option('--listen <addr:port>', 'proxy listen address', '127.0.0.1:8080'),
  { stateDir: stateDirOption() },
)
  .option('--first-session', 'create a session at start and print its shell exports', false)
  .option('--max-connections <n>', 'client connections of all sessions together (default: fitted to the open-file limit)')
  .option('--listener-connections <n>', 'client connections per listener, authenticated or not (default: a quarter of --max-connections, at most 1024)')
  .option('--auth-timeout <seconds>', 'close a connection that sends no authenticated request head within this', '10')
  .option('--ui <addr:port>', 'also serve the live view here (loopback only, e.g. 127.0.0.1:7070; port 0 picks one); its URL is printed on stderr')
  .action(async (opts) => {
    const { runDaemon } = await import('./daemon.js');
    await runDaemon(opts);
  });

const session = program.command('session').description("manage the running proxy's sessions");
session
  .command('create')
  .description('create a session and print its shell exports (eval "$(airlock session create)")')
  .option('--policy <file>', "policy for this session (default: the daemon's)")
  .addOption(stateDirOption())
  .option('--json', 'print JSON instead of shell exports')
  .option('--docker', "make the session's own Docker network (and firewall) for containers another launcher starts; print how to start them")
  .option('--image <image>', 'with --docker: the image for the printed docker run line and compose snippet', 'IMAGE')
  .option('--out <dir>', "with --docker: where to write the env, CA and compose files (default: the session's directory)")
  .action(async (opts) => {
    // This shell's variables go to the daemon, which holds the secrets and answers which of them
    // hold one: those are unset along with the sources.
    const body: Record<string, unknown> = { check_env: { ...process.env } };
    if (opts.policy) {
      const policy: Policy = loadPolicy(opts.policy); // validate here for a local error message
      body.policy_text = readFileSync(opts.policy, 'utf8');
      body.policy_source = policy.source;
      body.policy_file = resolvePath(opts.policy);
    }
    if (opts.docker) body.docker = true;
    const { adminRequest, exportsFor, withheldByExports } = await import('./daemon.js');
    const info = (await adminRequest(opts.stateDir, 'POST', '/sessions', body)) as SessionInfo;
    if (opts.docker) {
      const [{ describeDockerSession, writeDockerSessionFiles }, { sessionDir }] = await Promise.all([import('./docker-session.js'), import('../sessions/registry.js')]);
      const files = writeDockerSessionFiles(info, opts.out ?? join(sessionDir(opts.stateDir, info.id), 'docker'), opts.image);
      process.stdout.write(opts.json ? JSON.stringify({ ...info, bundle_pem: undefined, ...files }, null, 2) + '\n' : describeDockerSession(info, files));
      return;
    }
    const { withheldNotice } = await import('./session-env.js');
    process.stderr.write(withheldNotice(withheldByExports(info), opts.json ? "the session's environment (withheld_env)" : 'the shell that evals these exports'));
    process.stdout.write(opts.json ? JSON.stringify(info, null, 2) + '\n' : exportsFor(info));
  });
session
  .command('ls')
  .description('list sessions')
  .addOption(stateDirOption())
  .action(async (opts) => {
    const { adminRequest } = await import('./daemon.js');
    const list = (await adminRequest(opts.stateDir, 'GET', '/sessions')) as SessionInfo[];
    for (const s of list) {
      const launcher = s.launcher_pid === undefined ? '' : `  launcher=${s.launcher_pid}${s.leased ? ' (leased)' : ''}`;
      const network = s.docker_network ? `  network=${s.docker_network}` : '';
      process.stdout.write(`${s.id}  policy=${s.policy}  created=${s.created}  audit=${s.audit}${launcher}${network}\n`);
    }
    if (list.length === 0) process.stdout.write('no sessions\n');
  });
session
  .command('rm')
  .description('remove a session (its audit log stays)')
  .argument('<id>')
  .addOption(stateDirOption())
  .action(async (id: string, opts) => {
    const { removeDaemonSession } = await import('./daemon.js');
    await removeDaemonSession(opts.stateDir, id, { notice: (line) => process.stderr.write(`airlock: ${line}\n`) });
    process.stdout.write(`removed ${id}\n`);
  });

const auditCommand = program
  .command('audit')
  .description("show a session's audit log: a table and a per-host summary (admitted requests without an end are marked)")
  .argument('[session]', 'session id (with --usage: default every session)')
  .addOption(stateDirOption())
  .option('--follow', 'keep printing new lines as they are written')
  .option('--json', 'print the raw JSON lines')
  .option('--usage', 'sum the LLM token usage and estimated cost per session, model and day')
  .option('--pricing <policy>', "with --usage: price calls with this policy file's usage.pricing")
  .action(async (id: string | undefined, opts) => {
    if (opts.usage) return (await import('./usage.js')).printUsage(opts.stateDir, id, opts);
    if (id === undefined) throw new UsageError('missing argument: the session id (or --usage for every session)');
    const [{ parseAuditLines, parseAuditRecords, formatCutOff, formatRow, openState, summariseByHost, formatSummary, withoutEnd }, { sessionLogText }, { sessionDir }] =
      await Promise.all([import('../audit/report.js'), import('../audit/files.js'), import('../sessions/registry.js')]);
    const file = join(sessionDir(opts.stateDir, id), 'audit.jsonl');
    if (!existsSync(file)) throw new UsageError(`no audit log for session ${id} under ${opts.stateDir}`);
    const print = (lines: AuditLine[]) => {
      for (const line of lines) process.stdout.write(opts.json ? JSON.stringify(line) + '\n' : formatRow(line) + '\n');
    };
    const text = readFileSync(file, 'utf8');
    // Earlier (rotated) files first; admitted exchanges that never ended are shown where admitted.
    const records = parseAuditRecords(sessionLogText(dirname(file)));
    const lines = records.ends;
    const state = openState(records, pidAlive);
    const unended = new Set(withoutEnd(records));
    for (const r of records.all) {
      if (!('event' in r)) print([r]);
      else if (r.event === 'admit' && unended.has(r)) {
        process.stdout.write(opts.json ? JSON.stringify({ ...r, end: state === 'open' ? 'in_flight' : 'cut_off' }) + '\n' : formatCutOff(r, state) + '\n');
      }
    }
    if (!opts.follow) {
      if (!opts.json) {
        const cut = unended.size && state !== 'open' ? `${unended.size} admitted request(s) have no end: cut off when the proxy stopped (${state === 'crash' ? 'it did not close the log' : 'after the log closed'})\n` : '';
        process.stdout.write('\n' + formatSummary(summariseByHost(lines)) + cut);
      }
      return;
    }
    let offset = Buffer.byteLength(text);
    let partial = '';
    watchFile(file, { interval: 250 }, () => {
      const size = statSync(file).size;
      if (size < offset) offset = 0; // rotated: a new audit.jsonl
      if (size <= offset) return;
      const fresh = readFileSync(file).subarray(offset, size).toString('utf8');
      offset = size;
      const complete = partial + fresh;
      const cut = complete.lastIndexOf('\n');
      partial = complete.slice(cut + 1);
      print(parseAuditLines(complete.slice(0, cut + 1)));
    });
    await new Promise(() => {});
  });

/** Whether a process runs (the writer of a log that was not closed). */
function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const policyCommand = program.command('policy').description('work with policy files');
policyCommand
  .command('check')
  .description('validate a policy file and print a summary')
  .argument('<file>')
  .action((file: string) => {
    const policy = loadPolicy(file);
    const out = [`${file}: policy "${policy.name}" is valid (version ${policy.version}, mode ${policy.mode})`];
    for (const rule of policy.allow) {
      const parts = rule.git
        ? [
            `ports ${rule.ports.join(',')}`,
            'git smart HTTP only',
            rule.git.fetch.length > 0 ? `fetch ${rule.git.fetch.join(' ')}` : 'no fetch',
            ...rule.git.push.map(
              (p) =>
                `push ${p.repo}: ${[...p.branches.map((b) => `branch ${b}`), ...p.tags.map((t) => `tag ${t}`)].join(' ')} ` +
                `(${p.create ? 'create' : 'no create'}, ${p.force ? 'force' : 'fast-forward only'}, ${p.delete ? 'delete' : 'no delete'})`,
            ),
          ]
        : [
            rule.methods ? `methods ${rule.methods.join(',')}` : 'any method',
            `ports ${rule.ports.join(',')}`,
            rule.paths ? `paths ${rule.paths.join(' ')}` : 'any path',
            rule.inspect ? 'inspected' : 'tunnelled (not inspected)',
            ...(rule.mcp ? [`MCP tools ${rule.mcp.tools.length > 0 ? rule.mcp.tools.join(' ') : '(none)'} (tools/call and tools/list checked)`] : []),
          ];
      out.push(`  allow ${rule.host}: ${parts.join('; ')}`);
    }
    if (policy.allow.length === 0) out.push('  (no allow rules: every request is denied)');
    for (const c of policy.credentials) {
      out.push(`  credential ${c.name}: env ${c.env.join(',') || '(none; a login file in the session)'} → hosts ${c.hosts.join(',')} (in ${c.in.join(',')}; headers ${c.headers.join(',')}; secret from ${c.secret.kind})`);
    }
    const { pids, memoryBytes, cpus } = policy.container;
    if (pids !== null || memoryBytes !== null || cpus !== null) {
      const shown = (v: number | null, f: (n: number) => string) => (v === null ? 'default' : f(v));
      out.push(
        `  container: pids ${shown(pids, String)}; memory ${shown(memoryBytes, formatBytes)}; cpus ${shown(cpus, String)} (airlock run; flags override)`,
      );
    }
    for (const a of policy.usage?.apis ?? []) out.push(`  usage: ${a.host} read as the ${a.api} API on POST ${a.paths.join(' ')}`);
    for (const p of policy.usage?.pricing ?? []) {
      out.push(`  price ${p.model}: $ per million tokens input ${p.input}, output ${p.output}, cache read ${p.cacheRead}, cache write ${p.cacheWrite}`);
    }
    process.stdout.write(out.join('\n') + '\n');
  });

policyCommand
  .command('suggest')
  .description("print a least-privilege policy learned from a session's audit log (e.g. a mode: report session)")
  .argument('<session>', 'session id')
  .addOption(stateDirOption())
  .option('--name <name>', 'name of the suggested policy (default: suggested-<session>)')
  .option('--from <policy>', "keep this policy's credentials:, limits: and container: sections")
  .option('--paths', 'list the exact paths used (default: leave paths out, i.e. any path)', false)
  .action(async (id: string, opts: { stateDir: string; name?: string; from?: string; paths: boolean }) => {
    const [{ parseAuditLines }, { sessionLogText }, { sessionDir }, { suggestPolicy, SuggestError }] = await Promise.all([
      import('../audit/report.js'),
      import('../audit/files.js'),
      import('../sessions/registry.js'),
      import('../audit/suggest.js'),
    ]);
    let dir: string;
    try {
      dir = sessionDir(opts.stateDir, id);
    } catch {
      throw new UsageError(`${JSON.stringify(id)} is not a session id (they look like s-0123456789ab)`);
    }
    const file = join(dir, 'audit.jsonl');
    if (!existsSync(file)) throw new UsageError(`no audit log for session ${id} under ${opts.stateDir}`);
    let from: { text: string; source: string } | undefined;
    if (opts.from) {
      loadPolicy(opts.from); // a missing or invalid file is reported as such
      from = { text: readFileSync(opts.from, 'utf8'), source: opts.from };
    }
    try {
      const suggestion = suggestPolicy(parseAuditLines(sessionLogText(dir)), {
        session: id,
        name: opts.name,
        paths: opts.paths,
        from,
      });
      process.stdout.write(suggestion.text);
    } catch (err) {
      if (err instanceof SuggestError) throw new UsageError(err.message);
      throw err;
    }
  });

// The commands declared in other files, registered in this order (help lists them so), then the
// command line run. In one async function rather than at the top level: the bundle is CommonJS, so
// that it can load from V8's code cache (ARCHITECTURE.md, Start-up).
async function main(): Promise<void> {
  if (wants('audit')) (await import('./audit-verify.js')).registerAuditVerify(auditCommand, stateDirOption);
  if (wants('policy', 'inbox', 'approve', 'deny')) (await import('./operator.js')).registerOperatorCommands(program, policyCommand, stateDirOption);
  if (wants('run', 'gc')) (await import('./run.js')).registerRunCommands(program);
  if (wants('ui')) {
    (await import('./ui.js')).registerUiCommand(program, async (stateDir, method, path, body) => (await import('./daemon.js')).adminRequest(stateDir, method, path, body));
  }
  if (wants('image', 'doctor')) (await import('./image.js')).registerImageCommands(program);
  await program.parseAsync(process.argv);
}

main().catch((err: unknown) => {
  if (err instanceof PolicyError || err instanceof UsageError || err instanceof LaunchError || err instanceof SecretSourceError) {
    process.stderr.write(`airlock: ${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`airlock: ${(err as Error).message}\n`);
  process.exit(1);
});
