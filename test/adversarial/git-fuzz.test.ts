// A seeded fuzz run of the git push inspector (no sockets): valid push bodies made by git, then
// mutated (byte flips, truncation, inserted and deleted runs, duplicated slices, pkt-line lengths
// rewritten, pack header counts and object sizes changed), fed in random chunk sizes.
//
// Asserted for every case: the inspector never throws or emits 'error', always reaches a
// verdict, and either refuses (then it passed on less than the whole body, so the server never
// got a complete request, and it answers the client) or allows (then it passed on exactly the
// bytes it was given). No allowed case may move a ref the policy does not allow: a push to main
// is in every body, so any mutation that keeps it parseable must still be refused.
//
// Reproduce with another seed: AIRLOCK_FUZZ_SEED=1234 npx vitest run test/adversarial/git-fuzz.test.ts
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decide, parsePolicy } from '../../src/policy/index.js';
import { isolatedGitEnv, rmTmp, runProcess, tmpDir } from '../helpers/servers.js';
import { packOf, pushCommands, runInspector } from '../helpers/git-packs.js';
import { mulberry32 } from './helpers.js';

const SEED = process.env.AIRLOCK_FUZZ_SEED ? Number(process.env.AIRLOCK_FUZZ_SEED) : 0x91f_f022;
const CASES = 600;
const ZERO = '0'.repeat(40);

const policy = parsePolicy('version: 1\nname: f\nallow:\n  - host: github.com\n    git:\n      push:\n        - repo: acme/app\n          branches: ["agent/*"]\n', 'f.yaml');
const decision = decide(policy, { phase: 'request', scheme: 'https', host: 'github.com', port: 443, method: 'POST', path: '/acme/app.git/git-receive-pack', query: '' });

let dir: string;
const bodies: Buffer[] = [];

beforeAll(async () => {
  dir = tmpDir('airlock-git-fuzz-');
  const env = isolatedGitEnv(dir);
  const git = async (args: string[]) => (await runProcess('git', args, { cwd: dir, env })).stdout.trim();
  await git(['init', '-q', '-b', 'main']);
  const ids: string[] = [];
  for (let i = 0; i < 6; i++) {
    writeFileSync(join(dir, 'f.txt'), `${'same text '.repeat(300)}${i}\n`);
    await git(['add', 'f.txt']);
    await git(['commit', '-q', '-m', `commit ${i}\n\n${'a long repeated message line\n'.repeat(40)}`]);
    ids.push(await git(['rev-parse', 'HEAD']));
  }
  const pack = await packOf(dir, env, [ids[5]!, `^${ids[0]}`]);
  // An allowed fast-forward together with a refused update of main: refused as a whole.
  bodies.push(Buffer.concat([pushCommands([`${ids[0]} ${ids[5]} refs/heads/agent/x`, `${ids[0]} ${ids[5]} refs/heads/main`]), pack]));
  bodies.push(Buffer.concat([pushCommands([`${ZERO} ${ids[5]} refs/heads/main`]), pack]));
}, 60_000);

afterAll(() => rmTmp(dir));

type Mutation = (b: Buffer, rng: () => number) => Buffer;
const int = (rng: () => number, n: number) => Math.floor(rng() * n);
const MUTATIONS: Mutation[] = [
  (b, rng) => {
    const c = Buffer.from(b);
    for (let i = 0, n = 1 + int(rng, 8); i < n; i++) c[int(rng, c.length)] ^= 1 << int(rng, 8);
    return c;
  },
  (b, rng) => b.subarray(0, int(rng, b.length)),
  (b, rng) => {
    const at = int(rng, b.length);
    return Buffer.concat([b.subarray(0, at), Buffer.from(Array.from({ length: 1 + int(rng, 64) }, () => int(rng, 256))), b.subarray(at)]);
  },
  (b, rng) => {
    const at = int(rng, b.length);
    return Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + int(rng, 200))]);
  },
  (b, rng) => {
    const at = int(rng, b.length);
    const len = 1 + int(rng, 300);
    return Buffer.concat([b.subarray(0, at + len), b.subarray(at, at + len), b.subarray(at + len)]);
  },
  // A pkt-line length rewritten.
  (b, rng) => {
    const c = Buffer.from(b);
    c.write(int(rng, 0x10000).toString(16).padStart(4, '0'), 0, 'latin1');
    return c;
  },
  // The pack's object count, or an object header byte, changed.
  (b, rng) => {
    const c = Buffer.from(b);
    const pack = c.indexOf('PACK');
    if (pack === -1) return c;
    if (rng() < 0.5) c.writeUInt32BE(int(rng, 2 ** 32), pack + 8);
    else c[pack + 12 + int(rng, 3)] = int(rng, 256);
    return c;
  },
];

describe('git push inspector fuzz', () => {
  it(`${CASES} mutated push bodies: refused or passed on whole, never a crash (seed ${SEED})`, async () => {
    const rng = mulberry32(SEED);
    const errors: unknown[] = [];
    let refused = 0;
    for (let i = 0; i < CASES; i++) {
      let body = bodies[int(rng, bodies.length)]!;
      for (let m = 0, n = 1 + int(rng, 3); m < n; m++) body = MUTATIONS[int(rng, MUTATIONS.length)]!(body, rng);
      const chunk = [1, 7, 512, 4096, 65536][int(rng, 5)]!;
      const run = await runInspector(decision, body, { chunk }).catch((err: unknown) => {
        errors.push(err);
        return null;
      });
      if (!run) continue;
      expect(run.verdict, `case ${i}`).not.toBeNull();
      if (run.verdict!.reason) {
        refused++;
        expect(run.forwarded.length, `case ${i}: a refused body is never passed on whole`).toBeLessThan(Math.max(body.length, 1));
        expect(run.answer.status, `case ${i}`).toBeGreaterThanOrEqual(200);
      } else {
        expect(run.forwarded.equals(body), `case ${i}: an allowed body is passed on as given`).toBe(true);
        expect(run.verdict!.detail, `case ${i}`).not.toMatch(/refs\/heads\/main/);
      }
    }
    expect(errors).toEqual([]);
    // Every body pushes to main: nearly all mutations are refused (the rest no longer name it).
    expect(refused).toBeGreaterThan(CASES * 0.9);
  }, 120_000);
});
