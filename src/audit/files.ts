// A session's audit log on disk: the rotated files (audit.<n>.jsonl, oldest first), then the
// active audit.jsonl, and the signed head; read by `airlock audit`, `verify` and `policy suggest`.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AuditHead } from './chain.js';
import { rotatedFiles } from './log.js';
import type { LogFile } from './verify.js';

export function sessionLogFiles(dir: string): LogFile[] {
  const files: LogFile[] = rotatedFiles(dir).map((f) => ({ name: f.name, index: f.index, text: readFileSync(join(dir, f.name), 'utf8') }));
  const active = join(dir, 'audit.jsonl');
  if (existsSync(active)) files.push({ name: 'audit.jsonl', index: null, text: readFileSync(active, 'utf8') });
  return files;
}

/** The whole log as one text, oldest line first. */
export function sessionLogText(dir: string): string {
  return sessionLogFiles(dir)
    .map((f) => f.text)
    .join('');
}

export function readHead(dir: string): AuditHead | null {
  try {
    return JSON.parse(readFileSync(join(dir, 'audit.head'), 'utf8')) as AuditHead;
  } catch {
    return null;
  }
}
