// Reading audit logs back: parse lines, render a table and a per-host summary; and the one-line
// tallies `airlock exec` and `airlock run` print when a session ends.
import type { AuditEntry } from './entry.js';
import type { AdmitRecord, HostTally } from './log.js';

export type AuditLine = AuditEntry & { time: string };
/** An exchange admitted upstream; its end line (same id) says how it ended. */
export type AdmitLine = AdmitRecord & { event: 'admit'; time: string };
/** The log's own records: start (with the writing pid), resume, rotate, prune, gap, close. */
export type EventLine = { event: 'start' | 'resume' | 'rotate' | 'prune' | 'gap' | 'close'; time: string; session: string; pid?: number };

export interface AuditRecords {
  /** End lines, in the order written (what every reader of finished requests wants). */
  readonly ends: AuditLine[];
  readonly admits: AdmitLine[];
  readonly events: EventLine[];
  /** Every record in file order. */
  readonly all: (AuditLine | AdmitLine | EventLine)[];
}

export function parseAuditRecords(text: string): AuditRecords {
  const records: AuditRecords = { ends: [], admits: [], events: [], all: [] };
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    let parsed: AuditLine | AdmitLine | EventLine;
    try {
      parsed = JSON.parse(line) as AuditLine | AdmitLine | EventLine;
    } catch {
      continue; // A line cut short by a crash is skipped, not fatal (verify names it).
    }
    records.all.push(parsed);
    if (!('event' in parsed)) records.ends.push(parsed);
    else if (parsed.event === 'admit') records.admits.push(parsed);
    else records.events.push(parsed);
  }
  return records;
}

/** The end lines (one per finished request or tunnel); admit and the log's own records left out. */
export function parseAuditLines(text: string): AuditLine[] {
  return parseAuditRecords(text).ends;
}

/**
 * Why admitted exchanges have no end line: the log was not closed and the process writing it is
 * gone (`crash`), or it still runs (`open`: they are in progress). `isAlive` checks a pid.
 */
export function openState(records: AuditRecords, isAlive: (pid: number) => boolean): 'closed' | 'open' | 'crash' {
  const last = records.all[records.all.length - 1];
  if (last && 'event' in last && last.event === 'close') return 'closed';
  const writer = [...records.events].reverse().find((e) => e.event === 'start' || e.event === 'resume');
  return writer?.pid !== undefined && isAlive(writer.pid) ? 'open' : 'crash';
}

/** Admitted exchanges with no end line, in admission order. */
export function withoutEnd(records: AuditRecords): AdmitLine[] {
  const ended = new Set(records.ends.map((e) => e.id));
  return records.admits.filter((a) => !ended.has(a.id));
}

/** A table row for an admitted exchange that has no end line. */
export function formatCutOff(a: AdmitLine, state: 'open' | 'crash' | 'closed'): string {
  const when = a.time.slice(11, 23);
  const target = `${a.scheme}://${a.host}:${a.port}${a.kind === 'tunnel' ? '' : a.path}`;
  const creds = a.credentials.length ? ` creds=${a.credentials.join(',')}` : '';
  const what = state === 'open' ? 'IN FLIGHT: admitted, not ended yet' : 'CUT OFF: admitted, no end recorded (the proxy stopped)';
  return `${when}  ${pad(a.action.toUpperCase(), 10)} ${pad('----', 4)} ${pad(a.method, 7)} ${pad(target, 50)} ${what}${a.rule ? ` (${a.rule})` : ''}${creds}`;
}

function pad(value: string, width: number): string {
  return value.length >= width ? value : value + ' '.repeat(width - value.length);
}

export function formatRow(e: AuditLine): string {
  const when = e.time.slice(11, 23);
  const target = `${e.scheme}://${e.host}:${e.port}${e.kind === 'tunnel' ? '' : e.path}`;
  const creds = e.credentials.length ? ` creds=${e.credentials.join(',')}` : '';
  return `${when}  ${pad(e.action.toUpperCase(), 10)} ${pad(String(e.status), 4)} ${pad(e.method, 7)} ${pad(target, 50)} ${e.reason}${e.rule ? ` (${e.rule})` : ''}${creds}${e.detail ? ` [${e.detail}]` : ''}`;
}

export interface HostSummary {
  host: string;
  allowed: number;
  denied: number;
  wouldDeny: number;
  bytesUp: number;
  bytesDown: number;
  credentials: Set<string>;
}

export function summariseByHost(lines: readonly AuditLine[]): HostSummary[] {
  const byHost = new Map<string, HostSummary>();
  for (const e of lines) {
    const key = `${e.host}:${e.port}`;
    let s = byHost.get(key);
    if (!s) {
      s = { host: key, allowed: 0, denied: 0, wouldDeny: 0, bytesUp: 0, bytesDown: 0, credentials: new Set() };
      byHost.set(key, s);
    }
    if (e.action === 'deny') s.denied++;
    else if (e.action === 'would_deny') s.wouldDeny++;
    else s.allowed++;
    s.bytesUp += e.bytes_up;
    s.bytesDown += e.bytes_down;
    for (const c of e.credentials) s.credentials.add(c);
  }
  return [...byHost.values()].sort((a, b) => b.allowed + b.denied + b.wouldDeny - (a.allowed + a.denied + a.wouldDeny));
}

/** `allowed N denied N[ would-deny N]` for one host, each count padded to `width`. */
function hostCounts(t: HostTally, width = 0): string {
  const n = (count: number) => pad(String(count), width);
  return `allowed ${n(t.allowed)} denied ${n(t.denied)}${t.wouldDeny ? ` would-deny ${n(t.wouldDeny)}` : ''}`;
}

export function formatSummary(summary: readonly HostSummary[]): string {
  const rows = summary.map(
    (s) =>
      `${pad(s.host, 40)} ${hostCounts(s, 6)} up ${pad(String(s.bytesUp), 10)} down ${pad(String(s.bytesDown), 10)}${s.credentials.size ? ` creds=${[...s.credentials].join(',')}` : ''}`,
  );
  return ['per host:', ...rows].join('\n') + '\n';
}

/**
 * A session's per-host tally on one line. `by: 'host'` (airlock run):
 * `HOST allowed N denied N[ would-deny N]; ...`, or `no requests`. `by: 'outcome'` (airlock exec):
 * `allowed HOST×N ...|none; denied HOST×N ...|none[; would deny (report mode) HOST×N ...]`.
 */
export function formatTally(tally: ReadonlyMap<string, HostTally>, by: 'host' | 'outcome'): string {
  if (by === 'host') return [...tally].map(([host, t]) => `${host} ${hostCounts(t)}`).join('; ') || 'no requests';
  const hosts = (count: (t: HostTally) => number) => [...tally].filter(([, t]) => count(t)).map(([host, t]) => `${host}×${count(t)}`);
  const wouldDeny = hosts((t) => t.wouldDeny);
  const report = wouldDeny.length ? `; would deny (report mode) ${wouldDeny.join(' ')}` : '';
  return `allowed ${hosts((t) => t.allowed).join(' ') || 'none'}; denied ${hosts((t) => t.denied).join(' ') || 'none'}${report}`;
}
