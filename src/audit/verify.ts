// `airlock audit verify`: walks a session's chain (chain.ts) across its files and names the first
// thing wrong with it. Pure: the caller reads the files, the head and the key.
import { headIsSigned, macOf, genesis, splitLine } from './chain.js';
import type { AuditHead } from './chain.js';

/** Exit codes, documented in the README; a script can tell what went wrong. */
export const VERIFY_EXIT = {
  ok: 0,
  /** A line's content does not match its MAC (edited), or is not a whole chained line. */
  edited: 3,
  /** Lines deleted, inserted or out of order (seq or prev breaks). */
  broken: 4,
  /** The log is shorter than its signed head says, or a file or the head itself is missing. */
  missing: 5,
  /** Lines of another session (files spliced). */
  foreign: 6,
} as const;

export type VerifyProblem = keyof Omit<typeof VERIFY_EXIT, 'ok'>;

export interface LogFile {
  /** File name, for messages (audit.3.jsonl, audit.jsonl). */
  readonly name: string;
  /** Its index in the session's chain of files, from the name (null: the active audit.jsonl). */
  readonly index: number | null;
  readonly text: string;
}

export interface VerifyResult {
  readonly problem: VerifyProblem | null;
  readonly exitCode: number;
  /** What is wrong (the first thing), or what was verified. */
  readonly message: string;
  readonly lines: number;
  readonly lastSeq: number;
  /** The last record is the writer's close record. */
  readonly closed: boolean;
}

interface Parsed {
  readonly file: string;
  readonly lineNo: number;
  readonly seq: number;
  readonly prev: string;
  readonly mac: string;
  readonly rec: Record<string, unknown>;
}

export function verifyLog(session: string, key: Buffer, files: readonly LogFile[], head: AuditHead | null): VerifyResult {
  let lines = 0;
  let lastSeq = 0;
  let closed = false;
  const fail = (problem: VerifyProblem, message: string): VerifyResult => ({ problem, exitCode: VERIFY_EXIT[problem], message, lines, lastSeq, closed });
  if (files.length === 0) return fail('missing', `no audit log files for session ${session}`);

  // Parse and authenticate every line first: an edit is named as such, wherever it is.
  const all: Parsed[] = [];
  const fileStarts: number[] = [];
  for (const f of files) {
    fileStarts.push(all.length);
    const raw = f.text.split('\n');
    const tail = raw.pop();
    if (tail !== '') return fail('edited', `${f.name} line ${raw.length + 1}: a partial line (no line end) at the end of the file`);
    for (let i = 0; i < raw.length; i++) {
      const where = `${f.name} line ${i + 1}`;
      const parts = splitLine(raw[i]!);
      if (!parts) return fail('edited', `${where}: not a chained audit line (no MAC at its end)`);
      if (macOf(key, parts.body) !== parts.mac) return fail('edited', `${where}: edited (its content does not match its MAC)`);
      let rec: Record<string, unknown>;
      try {
        rec = JSON.parse(raw[i]!) as Record<string, unknown>;
      } catch {
        return fail('edited', `${where}: not valid JSON`);
      }
      if (rec.session !== session) return fail('foreign', `${where}: a line of session ${JSON.stringify(rec.session)}, spliced into ${session}'s log`);
      all.push({ file: f.name, lineNo: i + 1, seq: rec.seq as number, prev: rec.prev as string, mac: parts.mac, rec });
    }
  }

  // Which files the chain is made of: consecutive indices, the active one last.
  const first = files[0]!;
  const firstStart = all[fileStarts[0]!];
  const firstIndex = first.index ?? (firstStart?.rec.file as number | undefined) ?? 0;
  for (let i = 0; i < files.length; i++) {
    const f = files[i]!;
    const start = all[fileStarts[i]!];
    const startsHere = start && fileStarts[i]! < (fileStarts[i + 1] ?? all.length);
    const index = f.index ?? (startsHere ? (start.rec.file as number) : firstIndex + i);
    if (index !== firstIndex + i) return fail('missing', `${f.name}: file ${firstIndex + i} of the log is missing before it`);
    if (!startsHere) continue; // an empty file (a full disk at rotation): nothing in it to check
    if (start.rec.event !== 'start') {
      return fail('broken', `${f.name} line 1: the file does not begin with its start record (lines deleted or moved)`);
    }
    if (start.rec.event === 'start' && start.rec.file !== index) {
      return fail('broken', `${f.name} line 1: the start record says file ${String(start.rec.file)}, the file is ${index} (files renamed or swapped)`);
    }
  }

  // The chain: each line's seq follows and its prev is the MAC of the line before.
  let prev = firstIndex === 0 ? genesis(key, session) : all[0]?.prev;
  let expected = firstIndex === 0 ? 1 : (all[0]?.seq ?? 1);
  const bySeq = new Map<number, Parsed>();
  for (const p of all) if (!bySeq.has(p.seq)) bySeq.set(p.seq, p);
  let prunedBelow = 0;
  for (let i = 0; i < all.length; i++) {
    const p = all[i]!;
    const where = `${p.file} line ${p.lineNo} (seq ${p.seq})`;
    if (p.seq !== expected) {
      const later = all.slice(i + 1).find((q) => q.seq === expected);
      if (p.seq < expected || later) {
        return fail('broken', `${where}: out of order (seq ${expected} was expected here${later ? `; it is at ${later.file} line ${later.lineNo}` : ''}): lines were moved`);
      }
      const gone = p.seq - expected;
      return fail('broken', `${where}: ${gone} line${gone === 1 ? '' : 's'} (seq ${expected}${gone > 1 ? `..${p.seq - 1}` : ''}) deleted before it`);
    }
    if (p.prev !== prev) return fail('broken', `${where}: does not chain to the line before it (a line was replaced or inserted)`);
    if (p.rec.event === 'prune') prunedBelow = Math.max(prunedBelow, p.rec.below as number);
    prev = p.mac;
    expected = p.seq + 1;
    lines++;
    lastSeq = p.seq;
  }
  if (firstIndex > prunedBelow) {
    return fail('missing', `files 0..${firstIndex - 1} of the log are missing and no prune record says retention removed them`);
  }
  const last = all[all.length - 1];
  closed = last?.rec.event === 'close';

  // The tail: the signed head names the last line known synced; the log must reach it.
  if (!head) return fail('missing', 'no head file (audit.head): whether the tail was cut cannot be checked');
  if (head.session !== session || !headIsSigned(key, head)) return fail('missing', 'the head file (audit.head) is not signed for this session: edited or copied from another');
  if (head.seq > lastSeq) {
    return fail('missing', `missing tail: the log ends at seq ${lastSeq}, its signed head (written ${head.time}) records seq ${head.seq}: ${head.seq - lastSeq} line(s) cut off the end`);
  }
  const atHead = bySeq.get(head.seq);
  if (head.seq > 0 && (!atHead || atHead.mac !== head.mac)) {
    return fail('broken', `seq ${head.seq} is not the line the signed head recorded: the tail was replaced`);
  }
  const after = lastSeq - head.seq;
  const state = closed ? 'closed by its writer' : 'not closed (still being written, or its writer stopped without closing it)';
  const tail = after > 0 ? `; ${after} line(s) after the head's last sync (${head.time}) are chained but not covered by it` : '';
  return { problem: null, exitCode: VERIFY_EXIT.ok, message: `verified: ${lines} lines in ${files.length} file(s), seq ${all[0]?.seq ?? 0}..${lastSeq}, ${state}${tail}`, lines, lastSeq, closed };
}
