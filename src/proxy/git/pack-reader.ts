// A git pack read as it streams: every object is walked (each is a zlib stream with no length in
// front, so it must be inflated to find where the next one starts), the trailing checksum is
// verified, and the commits are kept as id -> parents so a push's fast-forwards can be checked.
//
// Memory stays bounded whatever the pack: object data is inflated and dropped, except commits
// (at most MAX_COMMIT_BYTES each, the most recent MAX_KEPT_BYTES of them, as delta bases) and the
// commit graph (at most MAX_GRAPH commits). Commit objects may be deltas against earlier commits
// (OFS_DELTA, or REF_DELTA to a commit in this pack); a delta whose base is not in the pack (a
// thin pack's base on the server) or was dropped yields a commit this reader cannot read, which
// only ever makes a fast-forward unprovable, never proven.
//
// Small objects are inflated synchronously (zlib.inflateSync reports how many input bytes the
// stream used); large ones through a streaming zlib.Inflate, off the event loop.
import { createHash, type Hash } from 'node:crypto';
import zlib from 'node:zlib';

export class PackError extends Error {}

export type HashAlgorithm = 'sha1' | 'sha256';

/** Commits larger than this are refused: real ones are a few hundred bytes. */
export const MAX_COMMIT_BYTES = 1024 * 1024;
/** Objects above this declared size are refused. */
export const MAX_OBJECT_BYTES = 4 * 1024 * 1024 * 1024;
/** Recent commit contents kept as possible delta bases. */
const MAX_KEPT_BYTES = 16 * 1024 * 1024;
/** Commits remembered for the ancestry walk. */
export const MAX_GRAPH = 200_000;
/** Objects up to this size are inflated in one synchronous call. */
const SYNC_BYTES = MAX_COMMIT_BYTES;

const OBJ_COMMIT = 1;
const OBJ_OFS_DELTA = 6;
const OBJ_REF_DELTA = 7;
const VALID_TYPES = new Set([1, 2, 3, 4, 6, 7]);

interface Current {
  readonly offset: number;
  readonly type: number;
  readonly size: number;
  /** Content of the delta base when this object is a delta against a commit this reader holds. */
  readonly commitBase: Buffer | null;
  /** Whether the inflated bytes are wanted (commits and deltas against commits). */
  readonly keep: boolean;
  /** Compressed bytes not yet known to belong to this object (synchronous mode), and their count. */
  zparts: Buffer[];
  zlength: number;
  nextTry: number;
  stream: StreamInflate | null;
}

export interface PackSummary {
  readonly objects: number;
  /** id -> parent ids of every commit read. */
  readonly commits: ReadonlyMap<string, readonly string[]>;
  /** Commits (or possible commits) that could not be read: thin-pack or dropped delta bases. */
  readonly unreadable: number;
  /** More commits than MAX_GRAPH: some were not remembered. */
  readonly graphFull: boolean;
}

export class PackReader {
  private state: 'header' | 'object' | 'data' | 'trailer' | 'done' = 'header';
  private pending: Buffer = Buffer.alloc(0);
  /** Pack offset of the next byte to be consumed. */
  private offset = 0;
  private left = 0;
  private objects = 0;
  private current: Current | null = null;
  private readonly hash: Hash;
  private readonly hashLength: number;
  private readonly commits = new Map<string, readonly string[]>();
  /** Contents of recent commits by pack offset, oldest first, for OFS_DELTA bases. */
  private readonly kept = new Map<number, { id: string; content: Buffer }>();
  private keptBytes = 0;
  /** Commit id -> pack offset, for REF_DELTA bases. */
  private readonly offsetOf = new Map<string, number>();
  private unreadable = 0;
  private graphFull = false;

  constructor(private readonly algorithm: HashAlgorithm = 'sha1') {
    this.hash = createHash(algorithm);
    this.hashLength = algorithm === 'sha1' ? 20 : 32;
  }

  get done(): boolean {
    return this.state === 'done';
  }

  /** Reads the next bytes of the pack; rejects with PackError when the pack is malformed. */
  async write(chunk: Buffer): Promise<void> {
    let data = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = Buffer.alloc(0);
    while (data.length > 0) {
      switch (this.state) {
        case 'header': {
          if (data.length < 12) return void (this.pending = data);
          if (data.toString('latin1', 0, 4) !== 'PACK') throw new PackError('the pack does not start with "PACK"');
          const version = data.readUInt32BE(4);
          if (version !== 2 && version !== 3) throw new PackError(`pack version ${version} is not 2 or 3`);
          this.left = data.readUInt32BE(8);
          data = this.consume(data, 12);
          this.state = this.left > 0 ? 'object' : 'trailer';
          break;
        }
        case 'object': {
          const used = this.objectHeader(data);
          if (used === 0) return void (this.pending = data);
          data = this.consume(data, used);
          this.state = 'data';
          break;
        }
        case 'data': {
          data = await this.inflate(data, false);
          break;
        }
        case 'trailer': {
          if (data.length < this.hashLength) return void (this.pending = data);
          const expected = this.hash.digest();
          if (!expected.equals(data.subarray(0, this.hashLength))) throw new PackError('the pack checksum does not match its contents');
          data = data.subarray(this.hashLength);
          this.state = 'done';
          break;
        }
        case 'done':
          throw new PackError('bytes follow the end of the pack');
      }
    }
  }

  /** The body ended: the pack must be complete. */
  async end(): Promise<PackSummary> {
    if (this.state === 'data') {
      const rest = await this.inflate(Buffer.alloc(0), true);
      if (rest.length > 0) await this.write(rest);
    }
    if (this.state !== 'done') throw new PackError(`the pack is truncated (${this.objects} of its objects read)`);
    return { objects: this.objects, commits: this.commits, unreadable: this.unreadable, graphFull: this.graphFull };
  }

  private consume(data: Buffer, n: number): Buffer {
    this.hash.update(data.subarray(0, n));
    this.offset += n;
    return data.subarray(n);
  }

  /** Parses an object's header; returns the bytes it took, or 0 when more are needed. */
  private objectHeader(data: Buffer): number {
    let i = 0;
    let byte = data[i++]!;
    const type = (byte >> 4) & 7;
    let size = byte & 15;
    let shift = 4;
    while (byte & 0x80) {
      if (i >= data.length) return 0;
      if (shift > 35) throw new PackError('an object header declares an absurd size');
      byte = data[i++]!;
      size += (byte & 0x7f) * 2 ** shift;
      shift += 7;
    }
    if (!VALID_TYPES.has(type)) throw new PackError(`object at offset ${this.offset} has invalid type ${type}`);
    if (size > MAX_OBJECT_BYTES) throw new PackError(`object at offset ${this.offset} declares ${size} bytes, over the limit of ${MAX_OBJECT_BYTES}`);
    if (type === OBJ_COMMIT && size > MAX_COMMIT_BYTES) {
      throw new PackError(`a commit object of ${size} bytes is over Airlock's limit of ${MAX_COMMIT_BYTES} bytes for commits`);
    }
    let commitBase: Buffer | null = null;
    if (type === OBJ_OFS_DELTA) {
      if (i >= data.length) return 0;
      byte = data[i++]!;
      let distance = byte & 0x7f;
      while (byte & 0x80) {
        if (i >= data.length) return 0;
        if (distance > 2 ** 45) throw new PackError('a delta base offset is out of range');
        byte = data[i++]!;
        distance = (distance + 1) * 128 + (byte & 0x7f);
      }
      if (distance <= 0 || distance > this.offset) throw new PackError(`a delta at offset ${this.offset} points outside the pack`);
      commitBase = this.kept.get(this.offset - distance)?.content ?? null;
    } else if (type === OBJ_REF_DELTA) {
      if (data.length < i + this.hashLength) return 0;
      const base = data.toString('hex', i, i + this.hashLength);
      i += this.hashLength;
      const at = this.offsetOf.get(base);
      commitBase = at === undefined ? null : (this.kept.get(at)?.content ?? null);
    }
    const keep = type === OBJ_COMMIT || (commitBase !== null && size <= MAX_COMMIT_BYTES);
    this.current = { offset: this.offset, type, size, commitBase, keep, zparts: [], zlength: 0, nextTry: 0, stream: null };
    return i;
  }

  /**
   * Feeds compressed bytes to the current object; returns the bytes that follow its zlib stream
   * (empty until it ends). `final`: no more bytes will come.
   */
  private async inflate(data: Buffer, final: boolean): Promise<Buffer> {
    const cur = this.current!;
    if (cur.stream === null) {
      if (data.length > 0) cur.zparts.push(data);
      cur.zlength += data.length;
      // Bytes are joined and tried only once twice as many are here as at the last try, so a
      // trickle of tiny chunks costs linear, not quadratic, work.
      if (cur.zlength < cur.nextTry && !final) return Buffer.alloc(0);
      const zbuf = cur.zparts.length === 1 ? cur.zparts[0]! : Buffer.concat(cur.zparts);
      cur.zparts = zbuf.length > 0 ? [zbuf] : [];
      if (cur.size <= SYNC_BYTES && zbuf.length <= 2 * SYNC_BYTES + 1024) {
        let out: { buffer: Buffer; engine: zlib.Inflate };
        try {
          out = zlib.inflateSync(zbuf, { info: true, maxOutputLength: Math.max(cur.size, 1) }) as unknown as { buffer: Buffer; engine: zlib.Inflate };
        } catch (err) {
          const code = (err as { code?: string }).code;
          if (code === 'Z_BUF_ERROR' && !final) {
            // The stream goes on past these bytes.
            cur.nextTry = zbuf.length * 2;
            return Buffer.alloc(0);
          }
          throw this.inflateError(cur, code);
        }
        const used = out.engine.bytesWritten;
        this.consume(zbuf, used);
        this.finish(cur, out.buffer.length, cur.keep ? out.buffer : null);
        return zbuf.subarray(used);
      }
      // Large: stream it, starting with what was gathered.
      cur.stream = new StreamInflate(cur.size, cur.keep);
      data = zbuf;
      cur.zparts = [];
    }
    const stream = cur.stream;
    let used: number;
    try {
      used = data.length > 0 ? await stream.write(data) : 0;
      if (used === data.length && final) await stream.end();
    } catch (err) {
      throw this.inflateError(cur, (err as { code?: string }).code);
    }
    this.consume(data, used);
    if (!stream.ended) return Buffer.alloc(0);
    await stream.closed();
    if (stream.error) throw this.inflateError(cur, stream.error);
    this.finish(cur, stream.produced, stream.output());
    return data.subarray(used);
  }

  private inflateError(cur: Current, code: string | undefined): PackError {
    if (code === 'ERR_BUFFER_TOO_LARGE' || code === 'TOO_LARGE') {
      return new PackError(`object at offset ${cur.offset} inflates to more than its declared ${cur.size} bytes`);
    }
    if (code === 'Z_BUF_ERROR') return new PackError(`the pack is truncated (object at offset ${cur.offset} is cut off)`);
    return new PackError(`object at offset ${cur.offset} is not valid zlib data (${code ?? 'error'})`);
  }

  private finish(cur: Current, produced: number, content: Buffer | null): void {
    if (produced !== cur.size) throw new PackError(`object at offset ${cur.offset} inflates to ${produced} bytes, not its declared ${cur.size}`);
    this.current = null;
    this.objects++;
    this.left--;
    this.state = this.left > 0 ? 'object' : 'trailer';
    if (cur.type === OBJ_COMMIT) this.addCommit(cur.offset, content!);
    else if (cur.type === OBJ_OFS_DELTA || cur.type === OBJ_REF_DELTA) {
      if (cur.commitBase && content) this.addCommit(cur.offset, applyDelta(cur.commitBase, content, cur.offset));
      else if (cur.commitBase) this.unreadable++;
      // A delta on a base not in the pack (thin pack) is of unknown type: it may be a commit.
      else if (cur.type === OBJ_REF_DELTA) this.unreadable++;
    }
  }

  private addCommit(offset: number, content: Buffer): void {
    if (content.length > MAX_COMMIT_BYTES) {
      this.unreadable++;
      return;
    }
    const id = createHash(this.algorithm).update(`commit ${content.length}\0`).update(content).digest('hex');
    const parents = parentsOf(content, this.hashLength * 2);
    if (parents === null) throw new PackError(`commit ${id} is malformed`);
    if (this.commits.size < MAX_GRAPH) this.commits.set(id, parents);
    else this.graphFull = true;
    this.offsetOf.set(id, offset);
    this.kept.set(offset, { id, content });
    this.keptBytes += content.length;
    for (const [at, old] of this.kept) {
      if (this.keptBytes <= MAX_KEPT_BYTES) break;
      this.kept.delete(at);
      this.offsetOf.delete(old.id);
      this.keptBytes -= old.content.length;
    }
  }
}

/** A commit's parent ids from its header ("tree ..." then "parent ..." lines); null if malformed. */
export function parentsOf(content: Buffer, idLength: number): string[] | null {
  const header = content.toString('latin1', 0, Math.min(content.length, 64 * 1024));
  const lines = header.split('\n');
  const { tree, parent } = idLength === 40 ? SHA1_LINES : SHA256_LINES;
  if (!tree.test(lines[0] ?? '')) return null;
  const parents: string[] = [];
  for (let i = 1; i < lines.length; i++) {
    const m = parent.exec(lines[i]!);
    if (!m) break;
    parents.push(m[1]!);
  }
  return parents;
}

const SHA1_LINES = { tree: /^tree [0-9a-f]{40}$/, parent: /^parent ([0-9a-f]{40})$/ };
const SHA256_LINES = { tree: /^tree [0-9a-f]{64}$/, parent: /^parent ([0-9a-f]{64})$/ };

function readVarint(delta: Buffer, at: { i: number }): number {
  let value = 0;
  let shift = 0;
  let byte: number;
  do {
    if (at.i >= delta.length || shift > 35) throw new PackError('a delta header is malformed');
    byte = delta[at.i++]!;
    value += (byte & 0x7f) * 2 ** shift;
    shift += 7;
  } while (byte & 0x80);
  return value;
}

/** Applies git's delta format (copy-from-base and insert instructions) to a base. */
export function applyDelta(base: Buffer, delta: Buffer, offset: number): Buffer {
  const at = { i: 0 };
  const bad = (why: string) => new PackError(`delta at offset ${offset} is malformed: ${why}`);
  if (readVarint(delta, at) !== base.length) throw bad('its base size does not match');
  const size = readVarint(delta, at);
  if (size > MAX_COMMIT_BYTES) throw bad('its result is too large for a commit');
  const out = Buffer.alloc(size);
  let o = 0;
  while (at.i < delta.length) {
    const op = delta[at.i++]!;
    if (op & 0x80) {
      let copyOffset = 0;
      let copySize = 0;
      for (let b = 0; b < 4; b++) if (op & (1 << b)) copyOffset += (delta[at.i++] ?? 0) * 2 ** (8 * b);
      for (let b = 0; b < 3; b++) if (op & (0x10 << b)) copySize += (delta[at.i++] ?? 0) * 2 ** (8 * b);
      if (copySize === 0) copySize = 0x10000;
      if (at.i > delta.length || copyOffset + copySize > base.length || o + copySize > size) throw bad('a copy is out of range');
      base.copy(out, o, copyOffset, copyOffset + copySize);
      o += copySize;
    } else if (op > 0) {
      if (at.i + op > delta.length || o + op > size) throw bad('an insert is out of range');
      delta.copy(out, o, at.i, at.i + op);
      at.i += op;
      o += op;
    } else {
      throw bad('opcode 0 is reserved');
    }
  }
  if (o !== size) throw bad('its result size does not match');
  return out;
}

/**
 * One object's zlib stream inflated by a streaming zlib.Inflate: `write` resolves with how many
 * of the bytes the stream used (fewer than given once it has ended). Output beyond the declared
 * size fails it (a zlib bomb); output is kept only when asked for.
 */
class StreamInflate {
  produced = 0;
  ended = false;
  error: string | undefined;
  private fed = 0;
  private readonly chunks: Buffer[] = [];
  private readonly inflater = zlib.createInflate();
  private readonly finished: Promise<void>;

  constructor(
    private readonly size: number,
    private readonly keep: boolean,
  ) {
    this.inflater.on('data', (chunk: Buffer) => {
      this.produced += chunk.length;
      if (this.produced > this.size) {
        this.error = 'TOO_LARGE';
        this.inflater.destroy();
        return;
      }
      if (this.keep) this.chunks.push(chunk);
    });
    this.finished = new Promise((resolve) => {
      this.inflater.once('end', () => {
        this.ended = true;
        resolve();
      });
      this.inflater.once('error', (err: Error & { code?: string }) => {
        this.error ??= err.code ?? 'error';
        this.ended = true;
        resolve();
      });
      this.inflater.once('close', () => resolve());
    });
  }

  async write(data: Buffer): Promise<number> {
    const before = this.fed;
    await new Promise<void>((resolve) => this.inflater.write(data, () => resolve()));
    if (this.error) throw Object.assign(new Error(this.error), { code: this.error });
    this.fed += data.length;
    const used = this.inflater.bytesWritten - before;
    // Fewer bytes used than given: zlib reached the end of the stream within them.
    if (used < data.length) this.ended = true;
    return used;
  }

  async end(): Promise<void> {
    this.inflater.end();
    await this.finished;
    if (this.error) throw Object.assign(new Error(this.error), { code: this.error });
  }

  closed(): Promise<void> {
    if (!this.inflater.readableEnded && !this.error) this.inflater.end();
    return this.finished;
  }

  output(): Buffer | null {
    return this.keep ? Buffer.concat(this.chunks) : null;
  }
}
