// The audit chain: every line of a session's log ends with `"seq":N,"prev":P,"mac":M`, where M is
// an HMAC of everything before `,"mac"` under the state dir's audit key and P is the previous
// line's M (the first line of a session chains to a genesis value derived from the session id).
// An edit breaks M; a deleted, inserted or reordered line breaks P or seq; lines of another
// session carry its id (covered by M); a cut tail is seen against the head file (see log.ts).
import { createHmac, randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Hex characters of each MAC (128 bits of HMAC-SHA256). */
const MAC_HEX = 32;
const MAC_KEY = ',"mac":"';

/** `<state dir>/audit.key`: outside every session's directory, owner-only. */
export function auditKeyPath(stateDir: string): string {
  return join(stateDir, 'audit.key');
}

/** Reads the state dir's audit key, creating it (32 random bytes, mode 0600) the first time. */
export function loadAuditKey(stateDir: string, create = true): Buffer {
  const file = auditKeyPath(stateDir);
  if (create) {
    try {
      writeFileSync(file, randomBytes(32).toString('hex') + '\n', { mode: 0o600, flag: 'wx' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    // A key left readable by others (copied in by hand, say) is made owner-only again.
    if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
  }
  const hex = readFileSync(file, 'utf8').trim();
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new Error(`${file} is not an audit key (64 hex digits)`);
  return Buffer.from(hex, 'hex');
}

export function macOf(key: Buffer, body: string): string {
  return createHmac('sha256', key).update(body).digest('hex').slice(0, MAC_HEX);
}

/** What the first line of a session's log chains to. */
export function genesis(key: Buffer, session: string): string {
  return macOf(key, `airlock-audit-genesis:${session}`);
}

/** Signs a record: `json` is a JSON object without seq, prev and mac; returns the full line. */
export function chainLine(key: Buffer, json: string, seq: number, prev: string): { line: string; mac: string } {
  const body = `${json.slice(0, -1)},"seq":${seq},"prev":"${prev}"`;
  const mac = macOf(key, body);
  return { line: `${body}${MAC_KEY}${mac}"}\n`, mac };
}

/** A line's body (what its MAC covers) and MAC, or null when it has no MAC at its end. */
export function splitLine(line: string): { body: string; mac: string } | null {
  const at = line.lastIndexOf(MAC_KEY);
  if (at === -1 || line.length !== at + MAC_KEY.length + MAC_HEX + 2 || !line.endsWith('"}')) return null;
  return { body: line.slice(0, at), mac: line.slice(at + MAC_KEY.length, at + MAC_KEY.length + MAC_HEX) };
}

/** The head file: the last line known written and synced, signed (see AuditLog.syncHead). */
export interface AuditHead {
  readonly session: string;
  readonly file: number;
  readonly seq: number;
  readonly mac: string;
  readonly time: string;
  readonly sig: string;
}

export function signHead(key: Buffer, head: Omit<AuditHead, 'sig'>): AuditHead {
  return { ...head, sig: macOf(key, `airlock-audit-head:${head.session}:${head.file}:${head.seq}:${head.mac}:${head.time}`) };
}

export function headIsSigned(key: Buffer, head: AuditHead): boolean {
  return signHead(key, { session: head.session, file: head.file, seq: head.seq, mac: head.mac, time: head.time }).sig === head.sig;
}
