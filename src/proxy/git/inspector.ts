// The body of a git push (POST git-receive-pack), checked as it streams to the server.
//
// The command list is held back until every ref update in it is decided; a refused one means no
// byte reaches the server. Then the pack is passed on as it is read, except its last bytes (the
// checksum, which ends the body): a fast-forward-only update is decided once every pushed commit
// is known, and until then the server, which acts only on a complete pack, has changed nothing.
// A refused push stops the upstream request (the caller aborts it) and is answered in git's own
// protocol once the client has sent its whole body, so git prints "! [remote rejected] ...".
// Nothing is rewritten: what is forwarded is byte for byte what was checked.
import { Transform, type TransformCallback } from 'node:stream';
import {
  decideFastForward,
  decideRefUpdate,
  refUpdateKind,
  type Decision,
  type DenyReason,
  type GitPushTarget,
  type Policy,
  type RefVerdict,
} from '../../policy/index.js';
import { PackError, PackReader } from './pack-reader.js';
import { bodyCoding } from '../headers.js';
import { PktLineError, PktLineReader } from './pkt-line.js';
import { fastForwardProof, parseCommand, PushRequestError, reportStatus, type Command } from './receive-pack.js';

/** The command list (and push options) held back at most: 100,000 ref updates or so. */
const MAX_COMMAND_BYTES = 8 * 1024 * 1024;

/** What the proxy does with a push once the inspector has decided. */
export interface GitVerdict {
  /** For the audit line: the repository, each ref update and what was decided. */
  readonly detail: string;
  /** Set when the push is (or, in report mode, would be) refused. */
  readonly reason?: Extract<DenyReason, 'git_ref_not_allowed' | 'bad_request'>;
  /**
   * Set when the push is refused: the upstream request must be stopped, and this answers the
   * client instead, once its whole body has been read.
   */
  readonly answer?: (res: AnswerOut) => void;
}

/** The part of a server response the answer needs. */
export interface AnswerOut {
  readonly headersSent: boolean;
  readonly destroyed: boolean;
  shouldKeepAlive: boolean;
  writeHead(status: number, headers: Record<string, string | number>): unknown;
  end(chunk?: Buffer | string): unknown;
}

/**
 * A checking transform for the body of a push a git rule allowed (decision.gitPush), or null for
 * any other request.
 */
export function gitPushInspector(
  decision: Decision,
  mode: Policy['mode'],
  rawHeaders: readonly string[],
): GitPushInspector | null {
  if (!decision.gitPush) return null;
  const inspector = new GitPushInspector(decision.gitPush, decision.rule ?? 'the policy', mode === 'enforce');
  const encoding = bodyCoding(rawHeaders);
  if (encoding !== undefined) {
    // Real git never compresses a push; a compressed one could not be checked as sent.
    inspector.refuseRequest(415, 'bad_request', `a git push body with Content-Encoding ${JSON.stringify(String(encoding)).slice(0, 40)} cannot be checked; send it uncompressed`);
  }
  return inspector;
}

type Phase = 'commands' | 'options' | 'pack' | 'end' | 'refused' | 'passthrough';

export class GitPushInspector extends Transform {
  private phase: Phase = 'commands';
  private readonly pkts = new PktLineReader();
  /** Raw bytes of the command list, held until it is decided. */
  private held: Buffer[] = [];
  private heldBytes = 0;
  private commands: Command[] = [];
  private capabilities: readonly string[] = [];
  private verdicts: RefVerdict[] = [];
  private pack: PackReader | null = null;
  /** The last bytes of the body, held until the pack is verified. */
  private tail: Buffer = Buffer.alloc(0);
  private tailLength = 20;
  /** Bytes after the command list, read with it: the start of the pack. */
  private packStart: Buffer = Buffer.alloc(0);
  private verdict: GitVerdict | null = null;
  private listener: ((v: GitVerdict) => void) | null = null;
  private bodyDone = false;
  private pendingAnswer: (() => void) | null = null;

  constructor(
    private readonly target: GitPushTarget,
    private readonly rule: string,
    private readonly enforce: boolean,
  ) {
    super();
  }

  /** Called once, with the decision on the push (at once if it is already made). */
  onVerdict(listener: (v: GitVerdict) => void): void {
    this.listener = listener;
    if (this.verdict) listener(this.verdict);
  }

  // Never fails as a stream: anything unexpected refuses the push (nothing is left to crash on).
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.inspect(chunk).then(
      () => done(),
      (err: Error) => {
        this.malformed(`it could not be read (${err.message})`);
        done();
      },
    );
  }

  override _flush(done: TransformCallback): void {
    const settle = () => {
      this.bodyDone = true;
      this.pendingAnswer?.();
      done();
    };
    this.finishBody().then(settle, (err: Error) => {
      this.malformed(`it could not be read (${err.message})`);
      settle();
    });
  }

  private async inspect(chunk: Buffer): Promise<void> {
    switch (this.phase) {
      case 'refused':
        return; // the rest of the body is read and dropped
      case 'passthrough':
        this.push(chunk);
        return;
      case 'commands':
      case 'options':
        this.hold(chunk);
        this.pkts.push(chunk);
        this.readPackets();
        if ((this.phase as Phase) === 'pack' && this.packStart.length > 0) {
          const start = this.packStart;
          this.packStart = Buffer.alloc(0);
          await this.packBytes(start);
        }
        return;
      case 'pack':
        return this.packBytes(chunk);
      case 'end':
        return this.malformed('bytes follow the end of the push request');
    }
  }

  private hold(chunk: Buffer): void {
    this.held.push(chunk);
    this.heldBytes += chunk.length;
    if (this.heldBytes > MAX_COMMAND_BYTES) this.malformed(`the command list is over ${MAX_COMMAND_BYTES} bytes`);
  }

  private readPackets(): void {
    try {
      for (let pkt = this.pkts.next(); pkt && (this.phase === 'commands' || this.phase === 'options'); pkt = this.pkts.next()) {
        if (this.phase === 'options') {
          if (pkt.kind === 'flush') this.commandsRead();
          continue;
        }
        if (pkt.kind === 'flush') {
          if (this.capabilities.includes('push-options') && this.commands.length > 0) this.phase = 'options';
          else this.commandsRead();
          continue;
        }
        const text = pkt.payload.toString('latin1', 0, 10);
        if (this.commands.length === 0 && text.startsWith('shallow ')) continue;
        if (this.commands.length === 0 && text.startsWith('push-cert')) {
          return this.refuseRequest(403, 'git_ref_not_allowed', 'signed pushes (push certificates) cannot be checked by Airlock; push without --signed');
        }
        const { command, capabilities } = parseCommand(pkt.payload, this.commands.length === 0);
        if (this.commands.length === 0) this.capabilities = capabilities;
        else if (command.oldId.length !== this.commands[0]!.oldId.length) throw new PushRequestError('commands mix object id lengths');
        this.commands.push(command);
      }
    } catch (err) {
      if (err instanceof PktLineError || err instanceof PushRequestError) return this.malformed(err.message);
      throw err;
    }
  }

  /** The command list is complete: decide each update, then pass it on, or refuse the push. */
  private commandsRead(): void {
    const rest = this.pkts.rest();
    // What was held, without the bytes after the command list (they belong to the pack).
    const commandBytes = Buffer.concat(this.held).subarray(0, this.heldBytes - rest.length);
    if (this.commands.length === 0) {
      this.held = [];
      // git's probe before a large push: an empty command list. Nothing to decide.
      this.phase = 'end';
      this.decided({ detail: `git push ${this.target.repo}: no ref updates` });
      this.push(commandBytes);
      if (rest.length > 0) this.malformed('bytes follow an empty command list');
      return;
    }
    this.verdicts = this.commands.map((c) => decideRefUpdate(this.target, c));
    if (this.verdicts.some((v) => v.verdict === 'deny')) return this.refuseRefs();
    this.held = [];
    const needsPack = this.commands.some((c) => refUpdateKind(c) !== 'delete');
    this.push(commandBytes);
    if (!needsPack) {
      this.phase = 'end';
      this.decided({ detail: this.describe() });
      if (rest.length > 0) this.malformed('bytes follow a push of deletions only');
      return;
    }
    const sha256 = this.commands[0]!.oldId.length === 64;
    this.pack = new PackReader(sha256 ? 'sha256' : 'sha1');
    this.tailLength = sha256 ? 32 : 20;
    this.phase = 'pack';
    this.packStart = rest;
  }

  private async packBytes(chunk: Buffer): Promise<void> {
    try {
      await this.pack!.write(chunk);
    } catch (err) {
      if (!(err instanceof PackError)) throw err;
      this.badPack(err);
      // Report mode: the push goes on as sent, this chunk included.
      if ((this.phase as Phase) === 'passthrough') this.push(chunk);
      return;
    }
    if (this.phase !== 'pack') return;
    // Everything but the last bytes seen goes on.
    if (chunk.length >= this.tailLength) {
      if (this.tail.length > 0) this.push(this.tail);
      this.push(chunk.subarray(0, chunk.length - this.tailLength));
      this.tail = Buffer.from(chunk.subarray(chunk.length - this.tailLength));
    } else {
      const joined = Buffer.concat([this.tail, chunk]);
      const cut = Math.max(0, joined.length - this.tailLength);
      if (cut > 0) this.push(joined.subarray(0, cut));
      this.tail = joined.subarray(cut);
    }
  }

  private async finishBody(): Promise<void> {
    switch (this.phase) {
      case 'commands':
      case 'options':
        return this.malformed('the push request ends inside its command list');
      case 'pack':
        break;
      default:
        return;
    }
    let summary;
    try {
      summary = await this.pack!.end();
    } catch (err) {
      if (err instanceof PackError) return this.badPack(err);
      throw err;
    }
    const note =
      (summary.unreadable > 0 ? `; ${summary.unreadable} pushed object${summary.unreadable === 1 ? '' : 's'} could not be read, being deltas on objects only the server has` : '') +
      (summary.graphFull ? '; the push has more commits than Airlock follows' : '');
    this.verdicts = this.verdicts.map((v, i) => {
      if (v.verdict !== 'fast-forward-only') return v;
      const c = this.commands[i]!;
      return decideFastForward(c, v.why, fastForwardProof(summary.commits, c.oldId, c.newId, note));
    });
    if (this.verdicts.some((v) => v.verdict === 'deny')) return this.refuseRefs();
    this.decided({ detail: `${this.describe()} (${summary.objects} objects, ${summary.commits.size} commits)` });
    this.push(this.tail);
    this.tail = Buffer.alloc(0);
  }

  private describe(): string {
    const refs = this.commands.map((c, i) => {
      const v = this.verdicts[i];
      return `${c.ref} ${v?.kind ?? refUpdateKind(c)} ${v?.verdict === 'deny' ? `refused: ${v.why}` : v?.verdict === 'allow' ? `allowed (${v.why})` : 'pending'}`;
    });
    return `git push ${this.target.repo}: ${refs.join('; ')}`.slice(0, 4000);
  }

  private refuseRefs(): void {
    const refused = this.verdicts.some((v) => v.verdict === 'deny');
    const reports = this.commands.map((c, i) => {
      const v = this.verdicts[i]!;
      return { ref: c.ref, error: v.verdict === 'deny' ? `airlock: ${v.why}` : refused ? 'airlock: not applied, another ref update in this push was refused' : null };
    });
    this.refuse('git_ref_not_allowed', this.describe(), (res) => this.answerGit(res, reports));
  }

  private badPack(err: PackError): void {
    const why = `the pushed pack is refused: ${err.message}`;
    const reports = this.commands.map((c) => ({ ref: c.ref, error: `airlock: ${why}` }));
    this.refuse('bad_request', `${this.describe()}; ${why}`, (res) => this.answerGit(res, reports));
  }

  private malformed(why: string): void {
    this.refuseRequest(400, 'bad_request', `malformed git push request: ${why}`);
  }

  /** Refuses with a plain-text answer (git prints it as "remote: ..." lines). */
  refuseRequest(status: number, reason: NonNullable<GitVerdict['reason']>, why: string): void {
    this.refuse(reason, `git push ${this.target.repo}: ${why}`, (res) => {
      const body = `Airlock: ${why} (${this.rule}).\n`;
      res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
    });
  }

  private answerGit(res: AnswerOut, reports: readonly { ref: string; error: string | null }[]): void {
    if (!this.capabilities.includes('report-status') && !this.capabilities.includes('report-status-v2')) {
      const body = `Airlock: ${reports.find((r) => r.error)?.error ?? 'push refused'}\n`;
      res.writeHead(403, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    const body = reportStatus(this.capabilities, reports, `Airlock refused this push to ${this.target.repo} (${this.rule}); ask the operator to change the rule's git: block.`);
    res.writeHead(200, { 'Content-Type': 'application/x-git-receive-pack-result', 'Cache-Control': 'no-cache', 'Content-Length': body.length });
    res.end(body);
  }

  private refuse(reason: NonNullable<GitVerdict['reason']>, detail: string, write: (res: AnswerOut) => void): void {
    if (this.phase === 'refused' || this.phase === 'passthrough') return;
    if (!this.enforce) {
      // Report mode: the push goes on as sent, and the audit line says it would have been refused.
      const held = [...this.held, this.tail];
      this.held = [];
      this.tail = Buffer.alloc(0);
      for (const b of held) if (b.length > 0) this.push(b);
      if (this.phase === 'commands' || this.phase === 'options') this.pkts.rest();
      this.phase = 'passthrough';
      this.decided({ detail, reason });
      return;
    }
    this.phase = 'refused';
    this.held = [];
    this.tail = Buffer.alloc(0);
    // Nothing more goes upstream; whatever was passed on but not yet taken is dropped.
    this.resume();
    this.decided({
      detail,
      reason,
      answer: (res) => {
        const send = () => {
          if (res.headersSent || res.destroyed) return;
          res.shouldKeepAlive = false;
          write(res);
        };
        if (this.bodyDone) send();
        else this.pendingAnswer = send;
      },
    });
  }

  private decided(v: GitVerdict): void {
    if (this.verdict && !this.verdict.reason && v.reason) {
      // A later refusal (bad bytes after an allowed command list) overrides the first verdict.
      this.verdict = v;
      this.listener?.(v);
      return;
    }
    if (this.verdict) return;
    this.verdict = v;
    this.listener?.(v);
  }
}
