// The audit log writer: one JSON line per entry, each stamped with the time it was written.
import { afterEach, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AuditLog, rotatedFiles } from '../../src/audit/log.js';
import type { AuditEntry } from '../../src/audit/entry.js';
import { parseAuditLines, parseAuditRecords } from '../../src/audit/report.js';
import { verifyLog } from '../../src/audit/verify.js';
import { readHead, sessionLogFiles } from '../../src/audit/files.js';
import { AuditFeed } from '../../src/view/feed.js';
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

describe('AuditLog: admit lines, the chain, rotation', () => {
  const key = Buffer.alloc(32, 9);
  const session = 's-0123456789ab';
  const admitOf = (id: string) => {
    const { status: _s, bytes_up: _u, bytes_down: _d, duration_ms: _m, ...rest } = entry(id);
    return rest;
  };

  it('writes the admit line before admit() returns; end lines follow in the same turn; listeners get end entries only', async () => {
    const dir = tmpDir();
    dirs.push(dir);
    const log = new AuditLog(join(dir, 'audit.jsonl'), { key, session });
    const told: string[] = [];
    log.subscribe((e) => told.push(e.id));
    expect(log.admit(admitOf('1'))).toBe(true);
    const now = readFileSync(log.file, 'utf8').trim().split('\n');
    expect(now.map((l) => (JSON.parse(l) as { event?: string }).event)).toEqual(['start', 'admit']);
    log.record(entry('1'));
    expect(told).toEqual(['1']);
    await new Promise((r) => setTimeout(r, 30));
    const records = parseAuditRecords(readFileSync(log.file, 'utf8'));
    expect(records.ends.map((e) => e.id)).toEqual(['1']);
    expect(records.admits.map((e) => e.id)).toEqual(['1']);
    await log.close();
    const files = [{ name: 'audit.jsonl', index: null, text: readFileSync(log.file, 'utf8') }];
    expect(verifyLog(session, key, files, readHead(dir))).toMatchObject({ problem: null, closed: true, lastSeq: 4 });
  });

  it('admitSoon: the admissions of one turn are written together before any is told; one ended first is never written', async () => {
    const dir = tmpDir();
    dirs.push(dir);
    const log = new AuditLog(join(dir, 'audit.jsonl'), { key, session });
    const seen: string[][] = [];
    const told: [string, boolean][] = [];
    const tell = (id: string) => (written: boolean) => {
      told.push([id, written]);
      // What the file holds when an exchange is told it may send.
      seen.push(parseAuditRecords(readFileSync(log.file, 'utf8')).admits.map((a) => a.id));
    };
    log.admitSoon(admitOf('1'), tell('1'));
    const cancelled = log.admitSoon(admitOf('2'), tell('2'));
    log.admitSoon(admitOf('3'), tell('3'));
    // Nothing is written in the turn that asked.
    expect(parseAuditRecords(readFileSync(log.file, 'utf8')).admits).toEqual([]);
    // Request 2 ends (its client left) before the write: it never went upstream.
    cancelled.cancel();
    log.record(entry('2'), false);
    await new Promise((r) => setImmediate(r));
    expect(told).toEqual([
      ['1', true],
      ['3', true],
    ]);
    expect(seen[0]).toEqual(['1', '3']);
    // A synchronous admission is written at once; the queued one follows in its turn, once.
    log.admitSoon(admitOf('4'), tell('4'));
    expect(log.admit(admitOf('5'))).toBe(true);
    await new Promise((r) => setImmediate(r));
    expect(told.at(-1)).toEqual(['4', true]);
    const records = parseAuditRecords(readFileSync(log.file, 'utf8'));
    expect(records.admits.map((a) => a.id)).toEqual(['1', '3', '5', '4']);
    expect(records.ends.map((e) => e.id)).toEqual(['2']);
    // Queued when the log closes: told it could not be written, and nothing of it is chained.
    log.admitSoon(admitOf('6'), tell('6'));
    await log.close();
    await new Promise((r) => setImmediate(r));
    expect(told.at(-1)).toEqual(['6', false]);
    expect(parseAuditRecords(readFileSync(log.file, 'utf8')).admits.map((a) => a.id)).toEqual(['1', '3', '5', '4']);
    expect(verifyLog(session, key, sessionLogFiles(dir), readHead(dir))).toMatchObject({ problem: null, closed: true });
  });

  it('admitSoon: end lines of a turn whose every queued admission was cancelled are still written in that turn', async () => {
    const dir = tmpDir();
    dirs.push(dir);
    const log = new AuditLog(join(dir, 'audit.jsonl'), { key, session });
    // A denied request ends in the same turn as one whose client leaves before its admission is
    // written: both end lines belong on disk now, not whenever the next request comes.
    log.record(entry('denied'), false);
    const queued = log.admitSoon(admitOf('left'), () => {
      throw new Error('a cancelled admission is never told');
    });
    queued.cancel();
    log.record(entry('left'), false);
    await new Promise((r) => setTimeout(r, 30));
    const records = parseAuditRecords(readFileSync(log.file, 'utf8'));
    expect(records.ends.map((e) => e.id)).toEqual(['denied', 'left']);
    expect(records.admits).toEqual([]);
    await log.close();
    expect(verifyLog(session, key, sessionLogFiles(dir), readHead(dir))).toMatchObject({ problem: null, closed: true });
  });

  it('admitSoon: a queued admission is not written by another exchange\'s admit(), so ending before its turn leaves no admit line', async () => {
    const dir = tmpDir();
    dirs.push(dir);
    const log = new AuditLog(join(dir, 'audit.jsonl'), { key, session });
    const told: string[] = [];
    const queued = log.admitSoon(admitOf('queued'), () => told.push('queued'));
    // A tunnel is admitted synchronously in the same turn, then the queued request's client
    // leaves before the batch is written: that request never goes upstream.
    expect(log.admit(admitOf('tunnel'))).toBe(true);
    queued.cancel();
    log.record(entry('queued'), false);
    await new Promise((r) => setTimeout(r, 30));
    expect(told).toEqual([]);
    const records = parseAuditRecords(readFileSync(log.file, 'utf8'));
    expect(records.admits.map((a) => a.id)).toEqual(['tunnel']);
    expect(records.ends.map((e) => e.id)).toEqual(['queued']);
    await log.close();
    expect(verifyLog(session, key, sessionLogFiles(dir), readHead(dir))).toMatchObject({ problem: null, closed: true });
  });

  it('rotates at the size, keeps the chain across files, and the view follows into the new file', async () => {
    const dir = tmpDir();
    dirs.push(dir);
    const log = new AuditLog(join(dir, 'audit.jsonl'), { key, session, rotateBytes: 4096 });
    const feed = new AuditFeed(session, log.file);
    for (let i = 0; i < 40; i++) {
      log.admit(admitOf(`r${i}`));
      log.record(entry(`r${i}`));
      log.flush();
      feed.catchUp();
    }
    await log.close();
    feed.catchUp();
    feed.catchUp();
    expect(rotatedFiles(dir).length).toBeGreaterThanOrEqual(3);
    expect(verifyLog(session, key, sessionLogFiles(dir), readHead(dir))).toMatchObject({ problem: null, closed: true });
    // Every end line counted once, admit and the log's own records not at all.
    expect(feed.totals.allow).toBe(40);
    feed.close();
  });

  it('a session log reopened continues its chain', async () => {
    const dir = tmpDir();
    dirs.push(dir);
    const first = new AuditLog(join(dir, 'audit.jsonl'), { key, session });
    first.record(entry('a'));
    await first.close();
    const again = new AuditLog(join(dir, 'audit.jsonl'), { key, session });
    again.record(entry('b'));
    await again.close();
    const result = verifyLog(session, key, sessionLogFiles(dir), readHead(dir));
    expect(result).toMatchObject({ problem: null, closed: true });
    expect(parseAuditLines(readFileSync(join(dir, 'audit.jsonl'), 'utf8')).map((l) => l.id)).toEqual(['a', 'b']);
  });
});
