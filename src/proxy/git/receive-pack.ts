// The parts of a push request (POST git-receive-pack) before its pack, the ancestry check on the
// pushed commits, and the answer git reads back (report-status, in side-band when asked for).
//
//   request  = *PKT-LINE("shallow" SP id) command-list [push-options] [pack]
//   command-list = PKT-LINE(old SP new SP ref NUL capabilities) *PKT-LINE(old SP new SP ref) flush
//   push-options = *PKT-LINE(option) flush          (only when "push-options" was asked for)
//   pack     = sent unless every command is a deletion
// (git's Documentation/gitprotocol-pack.txt). Signed pushes (push-cert) are refused: their
// commands sit inside the certificate.
import type { RefUpdate } from '../../policy/index.js';
import { FLUSH_PKT, pktLine } from './pkt-line.js';

export class PushRequestError extends Error {}

export interface Command extends RefUpdate {}

export interface FirstCommand {
  readonly command: Command;
  readonly capabilities: readonly string[];
}

/** One command packet; the first carries the client's capabilities after a NUL. */
export function parseCommand(payload: Buffer, first: boolean): FirstCommand {
  let text = payload.toString('latin1');
  if (text.endsWith('\n')) text = text.slice(0, -1);
  let capabilities: string[] = [];
  const nul = text.indexOf('\0');
  if (nul !== -1) {
    if (!first) throw new PushRequestError('only the first command may carry capabilities');
    capabilities = text.slice(nul + 1).split(' ').filter((c) => c !== '');
    text = text.slice(0, nul);
  }
  const m = /^([0-9a-f]{40}|[0-9a-f]{64}) ([0-9a-f]{40}|[0-9a-f]{64}) (refs\/[\x21-\x7e]+)$/.exec(text);
  if (!m || m[1]!.length !== m[2]!.length) throw new PushRequestError(`malformed command ${JSON.stringify(text.slice(0, 200))}`);
  return { command: { oldId: m[1]!, newId: m[2]!, ref: m[3]! }, capabilities };
}

/**
 * Null when `newId` is shown to descend from `oldId` by the pushed commits (id -> parents), else
 * why it is not shown. The walk stays within the pack: a commit the server already has ends it.
 */
export function fastForwardProof(commits: ReadonlyMap<string, readonly string[]>, oldId: string, newId: string, note = ''): string | null {
  if (!commits.has(newId)) {
    return `the new commit ${short(newId)} is not among the pushed commits: it is already on the server (on another branch, or an older commit), so Airlock cannot see its history${note}`;
  }
  const seen = new Set<string>([newId]);
  const queue = [newId];
  const edge = new Set<string>();
  while (queue.length > 0) {
    const id = queue.pop()!;
    const parents = commits.get(id);
    if (!parents) {
      edge.add(id);
      continue;
    }
    for (const p of parents) {
      if (p === oldId) return null;
      if (!seen.has(p)) {
        seen.add(p);
        queue.push(p);
      }
    }
  }
  const reached = [...edge].slice(0, 3).map(short).join(', ');
  return edge.size === 0
    ? `the history of ${short(newId)} in the pushed commits does not contain ${short(oldId)}${note}`
    : `the pushed history of ${short(newId)} leads to ${reached}${edge.size > 3 ? ', ...' : ''} on the server, not to ${short(oldId)}${note}`;
}

function short(id: string): string {
  return id.slice(0, 10);
}

export interface RefReport {
  readonly ref: string;
  /** null: ok; else the reason git prints in parentheses. */
  readonly error: string | null;
}

/**
 * A receive-pack result as git expects it: report-status packets, wrapped in side-band channel 1
 * when the client asked for side-band (git then prints "! [remote rejected] ref -> ref (reason)"),
 * with `message` on the progress channel (printed as "remote: ...").
 */
export function reportStatus(capabilities: readonly string[], refs: readonly RefReport[], message: string): Buffer {
  const report = Buffer.concat([
    pktLine('unpack ok\n'),
    ...refs.map((r) => pktLine(r.error === null ? `ok ${r.ref}\n` : `ng ${r.ref} ${oneLine(r.error)}\n`)),
    FLUSH_PKT,
  ]);
  const band = capabilities.includes('side-band-64k') ? 65515 : capabilities.includes('side-band') ? 995 : 0;
  if (band === 0) return report;
  const packets: Buffer[] = [];
  const channel = (n: number, data: Buffer) => {
    for (let i = 0; i < data.length; i += band) packets.push(pktLine(Buffer.concat([Buffer.from([n]), data.subarray(i, i + band)])));
  };
  if (message) channel(2, Buffer.from(message.split('\n').map((l) => `${l}\n`).join(''), 'utf8'));
  channel(1, report);
  packets.push(FLUSH_PKT);
  return Buffer.concat(packets);
}

function oneLine(text: string): string {
  return text.replace(/[\r\n\0]+/g, ' ').slice(0, 900);
}
