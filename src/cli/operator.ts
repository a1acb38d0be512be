// The operator's loop in the terminal: `airlock policy reload`, `airlock inbox`, `airlock approve`
// and `airlock deny`, all against the running daemon's admin endpoint.
import { createInterface } from 'node:readline/promises';
import type { Command, Option } from 'commander';
import type { InboxItem } from '../sessions/inbox.js';
import { plainText } from '../sessions/inbox.js';
import type { ApprovalPlan } from '../sessions/approve.js';
import type { ReloadResult } from '../sessions/policy-reload.js';
import { AdminError, adminRequest } from './daemon.js';
import { UsageError } from './config.js';
import { controlTarget } from './control.js';

function describeItem(item: InboxItem): string {
  const target = `${item.scheme}://${item.host}${(item.scheme === 'https' && item.port === 443) || (item.scheme === 'http' && item.port === 80) ? '' : `:${item.port}`}`;
  const what = item.method === null ? `CONNECT ${item.host}:${item.port}` : `${item.method} ${target}${item.path ?? ''}`;
  const seen = item.count === 1 ? `once, ${item.lastSeen}` : `${item.count}×, ${item.firstSeen} … ${item.lastSeen}`;
  const why = item.kind === 'requested' ? `asked: ${JSON.stringify(item.note ?? '')}` : `${item.reason}${item.rule ? ` (${item.rule})` : ''}`;
  const state = item.state === 'open' ? '' : ` [${item.state}]`;
  // What and why came from a session: shown as plain text, one line per item.
  return `${item.id.padStart(4)}  ${item.session}  ${plainText(what, 2100)}  ${plainText(why, 1100)}  ${seen}${state}`;
}

function printReload(results: readonly ReloadResult[]): void {
  for (const r of results) {
    if (r.ok) {
      const what = r.version === r.previous ? `version ${r.version} unchanged` : `version ${r.version} in force for new requests (was ${r.previous})`;
      process.stdout.write(`session ${r.session}: ${r.file}: ${what}\n`);
    } else {
      process.stderr.write(`airlock: session ${r.session}: reload refused, version ${r.version} stays in force: ${r.error?.message}\n`);
    }
    for (const w of r.warnings) process.stderr.write(`airlock: session ${r.session}: warning: ${w}\n`);
  }
}

/** The plan as the operator reads it before saying yes. */
export function formatPlan(plan: ApprovalPlan): string {
  const out = [plan.diff.trimEnd(), ''];
  out.push(`Adds to ${plan.file}: allow ${JSON.stringify(plan.rule)}`);
  for (const note of plan.notes) out.push(`Note: ${note}`);
  for (const c of plan.credentialReach) {
    out.push(`WIDENS A CREDENTIAL'S REACH: credential "${c.name}" is bound to ${c.hosts.join(', ')}; with this rule its secret is sent to ${plan.rule.host} on requests the rule allows`);
  }
  for (const w of plan.warnings) out.push(`Warning: ${w}`);
  const others = plan.sessions.filter((s) => s !== plan.item.session);
  if (others.length > 0) out.push(`Also applies to ${others.join(', ')}: they follow the same file`);
  out.push(`Version ${plan.from} → ${plan.to}`);
  return out.join('\n') + '\n';
}

async function confirm(question: string): Promise<boolean> {
  if (!process.stdin.isTTY) throw new UsageError('not a terminal: pass --yes to approve without asking');
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}

export function registerOperatorCommands(program: Command, policyCommand: Command, stateDirOption: () => Option): void {
  policyCommand
    .command('reload')
    .description("load the policy file again in the daemon's sessions (all, or one, or an embedded run's); the old policy stays if the file is invalid")
    .option('--session <id>', 'only this session (a daemon session, or an embedded `airlock run`/`exec` one)')
    .addOption(stateDirOption())
    .action(async (opts: { session?: string; stateDir: string }) => {
      try {
        const target = controlTarget(opts.stateDir, opts.session);
        const answer = (await adminRequest(opts.stateDir, 'POST', '/policy/reload', opts.session ? { session: opts.session } : {}, target)) as { results: ReloadResult[] };
        printReload(answer.results);
        if (answer.results.length === 0) process.stdout.write('no session follows a policy file\n');
      } catch (err) {
        if (!(err instanceof AdminError) || err.status !== 422) throw err;
        // 422 carries the results; printReload says which session kept which version and why.
        const results = (err.body as { results?: ReloadResult[] } | undefined)?.results ?? [];
        printReload(results);
        if (results.length === 0) process.stderr.write(`airlock: ${err.message}\n`);
        process.exitCode = 1;
      }
    });

  program
    .command('inbox')
    .description("requests the daemon's sessions were refused, and the access requests agents filed")
    .option('--all', 'include approved and dismissed items')
    .option('--session <id>', "only this session (an embedded `airlock run`/`exec` session's own inbox)")
    .option('--json', 'print JSON')
    .addOption(stateDirOption())
    .action(async (opts: { all?: boolean; session?: string; json?: boolean; stateDir: string }) => {
      const query = new URLSearchParams();
      if (opts.all) query.set('all', '1');
      if (opts.session) query.set('session', opts.session);
      const items = (await adminRequest(opts.stateDir, 'GET', `/inbox${query.size > 0 ? `?${query}` : ''}`, undefined, controlTarget(opts.stateDir, opts.session))) as InboxItem[];
      if (opts.json) return void process.stdout.write(JSON.stringify(items, null, 2) + '\n');
      for (const item of items) process.stdout.write(describeItem(item) + '\n');
      if (items.length === 0) process.stdout.write('inbox empty\n');
      else process.stdout.write('\n`airlock approve ID` shows the rule that would allow an item; `airlock deny ID` dismisses it\n');
    });

  program
    .command('approve')
    .description('show the narrowest rule that allows an inbox item as a diff of the policy file; on yes, write it and reload')
    .argument('<id>', 'inbox item (see `airlock inbox`)')
    .option('--yes', 'do not ask')
    .option('--session <id>', 'the item is in the inbox of this embedded `airlock run`/`exec` session, not the daemon\'s')
    .addOption(stateDirOption())
    .action(async (id: string, opts: { yes?: boolean; session?: string; stateDir: string }) => {
      if (!/^\d{1,12}$/.test(id)) throw new UsageError(`${JSON.stringify(id)} is not an inbox item id (see \`airlock inbox\`)`);
      const target = controlTarget(opts.stateDir, opts.session);
      const plan = (await adminRequest(opts.stateDir, 'GET', `/inbox/${id}/plan`, undefined, target)) as ApprovalPlan;
      process.stdout.write(formatPlan(plan));
      if (!opts.yes && !(await confirm(`Write ${plan.file} and reload? [y/N] `))) {
        process.stdout.write('not approved; nothing written\n');
        process.exitCode = 1;
        return;
      }
      const done = (await adminRequest(opts.stateDir, 'POST', `/inbox/${id}/approve`, { expect: plan.to }, target)) as { reload: ReloadResult[] };
      printReload(done.reload);
      process.stdout.write(`approved ${id}\n`);
    });

  program
    .command('deny')
    .description('dismiss an inbox item')
    .argument('<id>', 'inbox item (see `airlock inbox`)')
    .option('--session <id>', 'the item is in the inbox of this embedded `airlock run`/`exec` session, not the daemon\'s')
    .addOption(stateDirOption())
    .action(async (id: string, opts: { session?: string; stateDir: string }) => {
      if (!/^\d{1,12}$/.test(id)) throw new UsageError(`${JSON.stringify(id)} is not an inbox item id (see \`airlock inbox\`)`);
      await adminRequest(opts.stateDir, 'POST', `/inbox/${id}/deny`, undefined, controlTarget(opts.stateDir, opts.session));
      process.stdout.write(`dismissed ${id}\n`);
    });
}
