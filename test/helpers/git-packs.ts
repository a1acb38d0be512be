// Packs made by the real git CLI, and a git push body run through the push inspector without
// sockets. Shared by the git wire tests, the git fuzz run and the git rule tests.
//
//   packOf(cwd, env, revs, flags?)      → Promise<Buffer>  (`git pack-objects --stdout --revs`)
//   pushCommands(lines, caps?)          → Buffer           (command pkt-lines and the flush)
//   runInspector(decision, body, { chunk?, rawHeaders?, mode? })
//       → Promise<{ forwarded, verdict, answer: { status?, body? } }>
import { spawn } from 'node:child_process';
import type { Decision, Policy } from '../../src/policy/index.js';
import { gitPushInspector, type GitVerdict } from '../../src/proxy/git/inspector.js';
import { FLUSH_PKT, pktLine } from '../../src/proxy/git/pkt-line.js';

export function packOf(cwd: string, env: NodeJS.ProcessEnv, revs: readonly string[], flags: readonly string[] = []): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn('git', ['pack-objects', '--stdout', '--revs', '--delta-base-offset', ...flags], { cwd, env });
    const out: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`git pack-objects exited ${code}`))));
    child.stdin.end(revs.join('\n') + '\n');
  });
}

/** A receive-pack command list: "old new ref" lines, capabilities on the first. */
export function pushCommands(lines: readonly string[], caps = 'report-status side-band-64k'): Buffer {
  return Buffer.concat([...lines.map((l, i) => pktLine(i === 0 ? `${l}\0${caps}` : l)), FLUSH_PKT]);
}

export interface InspectorRun {
  /** What the inspector passed on towards the server. */
  readonly forwarded: Buffer;
  readonly verdict: GitVerdict | null;
  /** What a refusal answered the client. */
  readonly answer: { status?: number; body?: string };
}

export async function runInspector(
  decision: Decision,
  body: Buffer,
  opts: { chunk?: number; rawHeaders?: string[]; mode?: Policy['mode'] } = {},
): Promise<InspectorRun> {
  const inspector = gitPushInspector(decision, opts.mode ?? 'enforce', opts.rawHeaders ?? [])!;
  const forwarded: Buffer[] = [];
  inspector.on('data', (c: Buffer) => forwarded.push(c));
  let verdict: GitVerdict | null = null;
  inspector.onVerdict((v) => (verdict = v));
  const ended = new Promise<void>((resolve) => inspector.once('end', resolve).once('finish', () => setImmediate(resolve)));
  const chunk = opts.chunk ?? 1000;
  for (let i = 0; i < body.length; i += chunk) inspector.write(body.subarray(i, i + chunk));
  inspector.end();
  await ended;
  const answer: { status?: number; body?: string } = {};
  (verdict as GitVerdict | null)?.answer?.({
    headersSent: false,
    destroyed: false,
    shouldKeepAlive: true,
    writeHead: (status: number) => (answer.status = status),
    end: (b?: Buffer | string) => (answer.body = b === undefined ? '' : Buffer.from(b).toString('latin1')),
  });
  return { forwarded: Buffer.concat(forwarded), verdict, answer };
}
