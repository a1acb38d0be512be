// The git wire readers without sockets, on packs made by the real git CLI in a temp repository:
// pkt-lines, the streaming pack reader (plain, delta-encoded commits, thin packs, any chunking),
// the fast-forward proof, report-status, and the push inspector on hostile bodies.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import zlib from 'node:zlib';
import { isolatedGitEnv, rmTmp, runProcess, tmpDir } from '../helpers/servers.js';
import { parsePolicy, decide } from '../../src/policy/index.js';
import { PktLineReader, pktLine, PktLineError } from '../../src/proxy/git/pkt-line.js';
import { MAX_COMMIT_BYTES, PackError, PackReader } from '../../src/proxy/git/pack-reader.js';
import { fastForwardProof, parseCommand, reportStatus } from '../../src/proxy/git/receive-pack.js';
import { packOf, pushCommands, runInspector } from '../helpers/git-packs.js';

let dir: string;
let env: NodeJS.ProcessEnv;
const ZERO = '0'.repeat(40);

async function git(args: string[]): Promise<string> {
  const r = await runProcess('git', args, { cwd: dir, env });
  if (r.code !== 0) throw new Error(`git ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}

const packs = (revs: string[], flags: string[] = []) => packOf(dir, env, revs, flags);

async function commit(message: string, file = 'f.txt', content = message): Promise<string> {
  writeFileSync(join(dir, file), content + '\n');
  await git(['add', file]);
  await git(['commit', '-q', '-m', message]);
  return git(['rev-parse', 'HEAD']);
}

/** Reads a pack in chunks of `size` bytes. */
async function read(pack: Buffer, size = pack.length) {
  const reader = new PackReader();
  for (let i = 0; i < pack.length; i += size) await reader.write(pack.subarray(i, i + size));
  return reader.end();
}

let base: string;
let tip: string;
let linear: Buffer;
let deltaPack: Buffer;
let deltaTip: string;
let thin: Buffer;

beforeAll(async () => {
  dir = tmpDir('airlock-git-wire-');
  env = isolatedGitEnv(dir);
  await git(['init', '-q', '-b', 'main']);
  base = await commit('base', 'big.txt', Array.from({ length: 4000 }, (_, i) => `line ${i}`).join('\n'));
  await commit('one');
  await commit('two');
  tip = await commit('three');
  linear = await packs([tip, `^${base}`]);
  const long = Array.from({ length: 100 }, (_, i) => `a long commit message line ${i}`).join('\n');
  for (let i = 0; i < 5; i++) deltaTip = await commit(`delta ${i}\n\n${long}`, 'd.txt', String(i));
  deltaPack = await packs([deltaTip, `^${tip}`]);
  // A thin pack: big.txt changed by a line, sent as a delta on the blob the receiver has.
  writeFileSync(join(dir, 'big.txt'), Array.from({ length: 4000 }, (_, i) => `line ${i}${i === 10 ? ' changed' : ''}`).join('\n'));
  await git(['commit', '-q', '-am', 'thin']);
  thin = await packs([await git(['rev-parse', 'HEAD']), `^${deltaTip}`], ['--thin']);
}, 60_000);

afterAll(() => rmTmp(dir));

describe('pkt-line', () => {
  it('reads packets split anywhere and hands back what follows', () => {
    const bytes = Buffer.concat([pktLine('hello\n'), Buffer.from('0000'), pktLine('x'), Buffer.from('PACK')]);
    const r = new PktLineReader();
    const got: string[] = [];
    for (const b of bytes) {
      r.push(Buffer.from([b]));
      for (let p = r.next(); p; p = r.next()) got.push(p.kind === 'flush' ? 'flush' : p.payload.toString());
      if (got.length === 3) break;
    }
    expect(got).toEqual(['hello\n', 'flush', 'x']);
    r.push(Buffer.from('PACK'));
    expect(r.rest().toString()).toBe('PACK');
  });

  it.each(['zzzz', '0002', '0003', 'fff1'])('refuses the length %s', (len) => {
    const r = new PktLineReader();
    r.push(Buffer.from(len + 'abcdef'));
    expect(() => r.next()).toThrow(PktLineError);
  });
});

describe('the pack reader on packs git made', () => {
  it('finds every commit with its parents, in any chunking', async () => {
    for (const size of [1, 7, 100, 4096, linear.length]) {
      const summary = await read(linear, size);
      expect(summary.commits.size).toBe(3);
      expect(summary.commits.get(tip)).toHaveLength(1);
      expect(fastForwardProof(summary.commits, base, tip)).toBeNull();
    }
  });

  it('reads commits stored as deltas', async () => {
    const idx = join(dir, 'delta.pack');
    writeFileSync(idx, deltaPack);
    await git(['index-pack', idx]);
    const listing = await git(['verify-pack', '-v', idx]);
    // git stored some of these commits as deltas (a depth and a base after the sizes).
    expect(listing.split('\n').some((l) => / commit .* \d+ [0-9a-f]{40}$/.test(l))).toBe(true);
    const summary = await read(deltaPack, 333);
    expect(summary.commits.size).toBe(5);
    expect(summary.unreadable).toBe(0);
    expect(fastForwardProof(summary.commits, tip, deltaTip)).toBeNull();
  });

  it('reads a thin pack: the delta on a missing base is skipped, commits still found', async () => {
    const summary = await read(thin, 1000);
    expect(summary.commits.size).toBe(1);
    expect(summary.unreadable).toBe(1);
    expect(fastForwardProof(summary.commits, deltaTip, [...summary.commits.keys()][0]!)).toBeNull();
  });

  it('reads a SHA-256 repository\'s pack', async () => {
    const d = tmpDir('airlock-git-sha256-');
    try {
      const e = isolatedGitEnv(d);
      const g = async (args: string[]) => (await runProcess('git', args, { cwd: d, env: e })).stdout.trim();
      await g(['init', '-q', '--object-format=sha256', '-b', 'main']);
      const ids: string[] = [];
      for (const name of ['a', 'b', 'c']) {
        writeFileSync(join(d, name), name);
        await g(['add', name]);
        await g(['commit', '-q', '-m', name]);
        ids.push(await g(['rev-parse', 'HEAD']));
      }
      expect(ids[0]).toHaveLength(64);
      const pack = await packOf(d, e, [ids[2]!, `^${ids[0]}`]);
      const reader = new PackReader('sha256');
      await reader.write(pack);
      const summary = await reader.end();
      expect([...summary.commits.keys()].sort()).toEqual([ids[1], ids[2]].sort());
      expect(fastForwardProof(summary.commits, ids[0]!, ids[2]!)).toBeNull();
    } finally {
      rmTmp(d);
    }
  });

  it('says why a fast-forward is not shown', async () => {
    const summary = await read(linear);
    expect(fastForwardProof(summary.commits, tip, base)).toMatch(/not among the pushed commits/);
    expect(fastForwardProof(summary.commits, 'c'.repeat(40), tip)).toMatch(/leads to [0-9a-f]{10} on the server, not to cccccccccc/);
  });
});

/** A pack holding the given raw objects ([type, inflated content, compressed override?]). */
function craftPack(objects: Array<{ type: number; content: Buffer; size?: number; z?: Buffer }>): Buffer {
  const parts: Buffer[] = [Buffer.from('PACK'), Buffer.from([0, 0, 0, 2]), Buffer.alloc(4)];
  parts[2]!.writeUInt32BE(objects.length);
  for (const o of objects) {
    let size = o.size ?? o.content.length;
    const head = [(o.type << 4) | (size & 15)];
    size = Math.floor(size / 16);
    while (size > 0) {
      head[head.length - 1]! |= 0x80;
      head.push(size & 0x7f);
      size = Math.floor(size / 128);
    }
    parts.push(Buffer.from(head), o.z ?? zlib.deflateSync(o.content));
  }
  const body = Buffer.concat(parts);
  return Buffer.concat([body, createHash('sha1').update(body).digest()]);
}

describe('the pack reader on hostile packs', () => {
  const commitText = Buffer.from(`tree ${'a'.repeat(40)}\nparent ${'b'.repeat(40)}\nauthor x <x> 1 +0000\ncommitter x <x> 1 +0000\n\nm\n`);
  const cases: Array<[string, () => Buffer, RegExp]> = [
    ['a truncated pack', () => linear.subarray(0, linear.length - 30), /truncated/],
    ['a pack cut inside its header', () => linear.subarray(0, 7), /truncated/],
    ['a bad checksum', () => Buffer.concat([linear.subarray(0, -1), Buffer.from([linear[linear.length - 1]! ^ 1])]), /checksum does not match/],
    ['not a pack', () => Buffer.from('GARBAGE!'.repeat(4)), /does not start with "PACK"/],
    ['an absurd object size', () => Buffer.concat([Buffer.from('PACK\0\0\0\x02\0\0\0\x01'), Buffer.from([0xbf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]), Buffer.alloc(40)]), /absurd size|over the limit/],
    ['a commit over the commit size limit', () => craftPack([{ type: 1, content: Buffer.alloc(10), size: MAX_COMMIT_BYTES + 1 }]), /over Airlock's limit/],
    ['a zlib bomb in a commit', () => craftPack([{ type: 1, content: commitText, z: zlib.deflateSync(Buffer.alloc(64 * 1024 * 1024)) }]), /inflates to more than its declared/],
    ['an object that inflates short of its size', () => craftPack([{ type: 3, content: Buffer.from('abc'), size: 10 }]), /inflates to 3 bytes, not its declared 10/],
    ['a bad object type', () => craftPack([{ type: 5, content: Buffer.from('x') }]), /invalid type 5/],
    ['bad zlib data', () => craftPack([{ type: 3, content: Buffer.from('abc'), z: Buffer.from('not zlib at all') }]), /not valid zlib data/],
    ['a delta outside the pack', () => Buffer.concat([Buffer.from('PACK\0\0\0\x02\0\0\0\x01'), Buffer.from([0x6a, 0x7f]), zlib.deflateSync(Buffer.from('xx'))]), /points outside the pack/],
    ['a malformed commit', () => craftPack([{ type: 1, content: Buffer.from('not a commit') }]), /malformed/],
    ['bytes after the pack', () => Buffer.concat([linear, Buffer.from('x')]), /bytes follow the end/],
  ];
  it.each(cases)('%s is refused', async (_name, make, message) => {
    const pack = make();
    for (const size of [pack.length, 5]) {
      await expect(read(pack, size)).rejects.toThrow(PackError);
      await expect(read(pack, size)).rejects.toThrow(message);
    }
  });

  it('a zlib bomb in a large object streams within its declared size and is cut there', async () => {
    const bomb = craftPack([{ type: 3, content: Buffer.alloc(0), size: 2 * 1024 * 1024, z: zlib.deflateSync(Buffer.alloc(256 * 1024 * 1024)) }]);
    const before = process.memoryUsage().rss;
    await expect(read(bomb, 65536)).rejects.toThrow(/inflates to more than its declared/);
    expect(process.memoryUsage().rss - before).toBeLessThan(128 * 1024 * 1024);
  });
});

describe('commands and report-status', () => {
  it('parses the first command with capabilities', () => {
    const c = parseCommand(Buffer.from(`${ZERO} ${'a'.repeat(40)} refs/heads/x\0report-status side-band-64k agent=git/2`), true);
    expect(c.command).toEqual({ oldId: ZERO, newId: 'a'.repeat(40), ref: 'refs/heads/x' });
    expect(c.capabilities).toEqual(['report-status', 'side-band-64k', 'agent=git/2']);
    expect(() => parseCommand(Buffer.from(`${ZERO} ${'a'.repeat(64)} refs/heads/x`), true)).toThrow(/malformed/);
    expect(() => parseCommand(Buffer.from(`${ZERO} ${'a'.repeat(40)} refs/heads/x\0caps`), false)).toThrow(/capabilities/);
  });

  it('wraps the report in side-band when asked', () => {
    const plain = reportStatus(['report-status'], [{ ref: 'refs/heads/main', error: 'airlock: no' }], 'msg');
    expect(plain.toString()).toBe('000eunpack ok\n0023ng refs/heads/main airlock: no\n0000');
    const banded = reportStatus(['report-status', 'side-band-64k'], [{ ref: 'refs/heads/main', error: null }], 'hello');
    expect(banded.toString('latin1')).toBe('000b\x02hello\n' + '002e\x01000eunpack ok\n0017ok refs/heads/main\n0000' + '0000');
  });
});

describe('the push inspector on hostile bodies', () => {
  const policy = parsePolicy('version: 1\nname: w\nallow:\n  - host: github.com\n    git:\n      push:\n        - repo: acme/app\n          branches: ["agent/*"]\n', 'w.yaml');
  const decision = decide(policy, { phase: 'request', scheme: 'https', host: 'github.com', port: 443, method: 'POST', path: '/acme/app.git/git-receive-pack', query: '' });

  const inspect = (body: Buffer, chunk = 1000, rawHeaders: string[] = []) => runInspector(decision, body, { chunk, rawHeaders });

  const commands = (newId: string, ref = 'refs/heads/agent/x', oldId = ZERO) => pushCommands([`${oldId} ${newId} ${ref}`]);

  it('passes an allowed push on byte for byte', async () => {
    const body = Buffer.concat([commands(tip), linear]);
    for (const chunk of [1, 17, 65536]) {
      const r = await inspect(body, chunk);
      expect(r.verdict?.reason).toBeUndefined();
      expect(r.forwarded.equals(body)).toBe(true);
    }
  });

  it('reads shallow lines and push options around the command list', async () => {
    const body = Buffer.concat([
      pktLine(`shallow ${base}`),
      pushCommands([`${ZERO} ${tip} refs/heads/agent/x`], 'report-status push-options'),
      pktLine('ci.skip'),
      Buffer.from('0000'),
      linear,
    ]);
    const r = await inspect(body, 3);
    expect(r.verdict?.reason).toBeUndefined();
    expect(r.verdict?.detail).toMatch(/refs\/heads\/agent\/x create allowed/);
    expect(r.forwarded.equals(body)).toBe(true);
  });

  it('a push of deletions only has no pack, and git\'s empty probe passes', async () => {
    const probe = await inspect(Buffer.from('0000'));
    expect(probe.verdict).toMatchObject({ detail: 'git push acme/app: no ref updates' });
    expect(probe.forwarded.toString()).toBe('0000');
    const del = await inspect(pushCommands([`${tip} ${ZERO} refs/heads/agent/x`]));
    expect(del.verdict?.reason).toBe('git_ref_not_allowed');
    expect(del.answer.body).toContain('deleting branch agent/x is not allowed');
  });

  const hostile: Array<[string, () => Buffer, RegExp, number]> = [
    ['a malformed pkt-line length', () => Buffer.concat([Buffer.from('00zz'), linear]), /malformed pkt-line length/, 400],
    ['a command that is not one', () => Buffer.concat([pktLine('hello world'), Buffer.from('0000')]), /malformed command/, 400],
    ['a body that ends in the command list', () => pktLine(`${ZERO} ${tip} refs/heads/agent/x\0report-status`), /ends inside its command list/, 400],
    ['a truncated pack', () => Buffer.concat([commands(tip), linear.subarray(0, linear.length - 25)]), /truncated/, 200],
    ['a bad pack checksum', () => Buffer.concat([commands(tip), linear.subarray(0, -1), Buffer.from([0])]), /checksum does not match/, 200],
    ['an absurd object size', () => Buffer.concat([commands(tip), Buffer.from('PACK\0\0\0\x02\0\0\0\x01'), Buffer.from([0xbf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])]), /absurd size|over the limit/, 200],
    ['a zlib bomb in a commit', () => Buffer.concat([commands(tip), craftPack([{ type: 1, content: Buffer.alloc(1), size: 200, z: zlib.deflateSync(Buffer.alloc(8 * 1024 * 1024)) }])]), /inflates to more than its declared/, 200],
    ['a signed push', () => Buffer.concat([pktLine('push-cert\0report-status\n'), pktLine('certificate version 0.1\n')]), /signed pushes/, 403],
  ];
  it.each(hostile)('%s is refused and no complete request is forwarded', async (_name, make, message, status) => {
    const body = make();
    const r = await inspect(body, 7);
    expect(r.verdict?.reason).toMatch(/bad_request|git_ref_not_allowed/);
    expect(r.verdict?.detail).toMatch(message);
    expect(r.answer.status).toBe(status);
    expect(r.answer.body).toMatch(message);
    // The server never gets the whole body: at most the command list, never the pack's end.
    expect(r.forwarded.length).toBeLessThan(body.length);
  });

  it('a refused ref update forwards nothing at all', async () => {
    const r = await inspect(Buffer.concat([commands(tip, 'refs/heads/main', base), linear]));
    expect(r.forwarded.length).toBe(0);
    expect(r.answer.body).toContain('ng refs/heads/main airlock: branch main may not be pushed');
  });

  it('a force push is refused after the pack, its checksum withheld', async () => {
    const body = Buffer.concat([commands(base, 'refs/heads/agent/x', tip), await packs([base, `^${tip}`])]);
    const r = await inspect(body);
    expect(r.verdict?.reason).toBe('git_ref_not_allowed');
    expect(r.answer.body).toMatch(/ng refs\/heads\/agent\/x airlock: not a fast-forward/);
    expect(r.forwarded.equals(body.subarray(0, body.length - 20))).toBe(true);
  });

  it('in report mode a push that would be refused goes through, audited as such', async () => {
    const body = Buffer.concat([commands(tip, 'refs/heads/main', base), linear]);
    const r = await runInspector(decision, body, { mode: 'report' });
    expect(r.verdict?.reason).toBe('git_ref_not_allowed');
    expect(r.verdict?.answer).toBeUndefined();
    expect(r.verdict?.detail).toMatch(/refs\/heads\/main update refused/);
    expect(r.forwarded.equals(body)).toBe(true);
    const bad = Buffer.concat([commands(tip), linear.subarray(0, -1), Buffer.from([0])]);
    const badRun = await runInspector(decision, bad, { mode: 'report', chunk: 100 });
    expect(badRun.verdict?.reason).toBe('bad_request');
    expect(badRun.forwarded.equals(bad)).toBe(true);
  });

  it('a compressed push body is refused before anything is read', async () => {
    const r = await inspect(Buffer.concat([commands(tip), linear]), 1000, ['Content-Encoding', 'gzip']);
    expect(r.answer.status).toBe(415);
    expect(r.forwarded.length).toBe(0);
  });
});
