// The audit log writer: one JSON line per entry, each stamped with the time it was written.
import { afterEach, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AuditLog } from '../../src/audit/log.js';
import type { AuditEntry } from '../../src/audit/entry.js';
import { parseAuditLines } from '../../src/audit/report.js';
import { rmTmp, sleep, tmpDir } from '../helpers/servers.js';

const dirs: string[] = [];
afterEach(() => rmTmp(...dirs.splice(0)));

function entry(id: string): AuditEntry {
  return {
    session: 's-0123456789ab', id, kind: 'request', method: 'GET', scheme: 'https', host: 'a.example.com', port: 443, path: '/',
    status: 200, action: 'allow', rule: null, reason: 'allowed', credentials: [], bytes_up: 0, bytes_down: 0, duration_ms: 1,
  };
}

describe('AuditLog', () => {
  it('stamps each line with the time it was written, first key, valid JSON', async () => {
    const dir = tmpDir();
    dirs.push(dir);
    const log = new AuditLog(join(dir, 'audit.jsonl'), { key: Buffer.alloc(32, 7), session: 's-0123456789ab' });
    await sleep(30);
    const opened = Date.now();
    log.record(entry('1'));
    await sleep(30);
    log.record(entry('2'));
    await log.close();
    const text = readFileSync(log.file, 'utf8');
    for (const raw of text.trim().split('\n')) expect(raw.startsWith('{"time":"') || raw.startsWith('{"event":')).toBe(true);
    const lines = parseAuditLines(text);
    expect(lines.map((l) => l.id)).toEqual(['1', '2']);
    expect(Date.parse(lines[0]!.time)).toBeGreaterThanOrEqual(opened);
    expect(Date.parse(lines[1]!.time) - Date.parse(lines[0]!.time)).toBeGreaterThanOrEqual(20);
    expect(Object.keys(lines[0]!).filter((k) => k === 'level')).toEqual([]);
  });
});
