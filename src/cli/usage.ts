// `airlock audit --usage [session]`: one session's LLM usage, or every session's in the state dir.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { sessionLogText } from '../audit/files.js';
import { parseAuditLines } from '../audit/report.js';
import type { AuditLine } from '../audit/report.js';
import { formatUsage, summariseUsage } from '../audit/usage-report.js';
import { sessionDir } from '../sessions/registry.js';
import { isSessionId } from '../sessions/session.js';
import { loadPolicy, UsageError } from './config.js';

export function printUsage(stateDir: string, id: string | undefined, opts: { json?: boolean; pricing?: string }): void {
  let ids: string[];
  if (id !== undefined) {
    if (!isSessionId(id)) throw new UsageError(`${JSON.stringify(id)} is not a session id (they look like s-0123456789ab)`);
    ids = [id];
  } else {
    const root = join(stateDir, 'sessions');
    ids = existsSync(root) ? readdirSync(root).filter(isSessionId).sort() : [];
  }
  const lines: AuditLine[] = [];
  for (const s of ids) {
    const file = join(sessionDir(stateDir, s), 'audit.jsonl');
    if (!existsSync(file)) {
      if (id !== undefined) throw new UsageError(`no audit log for session ${s} under ${stateDir}`);
      continue;
    }
    // Rotated files too: a long session's usage spans them.
    lines.push(...parseAuditLines(sessionLogText(sessionDir(stateDir, s))));
  }
  const pricing = opts.pricing ? (loadPolicy(opts.pricing).usage?.pricing ?? []) : undefined;
  const summary = summariseUsage(lines, pricing);
  process.stdout.write(opts.json ? JSON.stringify(summary, null, 2) + '\n' : formatUsage(summary));
}
