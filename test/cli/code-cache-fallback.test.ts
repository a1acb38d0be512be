// The CLI's code cache fails safe (scripts/cli-main.cjs): whatever state the cache beside the
// bundle is in, `airlock exec` compiles the bundle from source and runs its command as it would
// with the cache. Cases beside test/cli/exec-startup.test.ts's damaged cache: one V8 rejects (other
// V8 flags than the build's) and one that cannot be read (a directory where the file should be).
// Each runs a copy of the loader, the bundle and the cache in a directory of the test's own.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT, rmTmp, runProcess, tmpDir } from '../helpers/servers.js';

const CLI_DIR = join(REPO_ROOT, 'dist', 'cli');
let dir: string;
let script: string;
let cacheName: string;

const shebangFlags = (): string[] => {
  const m = /^#!\/usr\/bin\/env -S node(.*)$/.exec(readFileSync(join(CLI_DIR, 'main.cjs'), 'utf8').split('\n')[0]!);
  return m ? m[1]!.trim().split(/\s+/).filter(Boolean) : [];
};

beforeAll(() => {
  dir = tmpDir('airlock-code-cache-fallback-');
  writeFileSync(join(dir, 'policy.yaml'), 'version: 1\nname: fallback\nallow:\n  - host: api.github.com\n');
  // The loader's verdict on the cache, at exit.
  writeFileSync(
    join(dir, 'status.cjs'),
    `process.on('exit', () => { const cli = globalThis[Symbol.for('airlock.cli')]; require('node:fs').writeFileSync(process.env.STATUS_FILE, cli ? cli.cache : 'none'); });`,
  );
  script = (JSON.parse(readFileSync(join(CLI_DIR, 'bundle.json'), 'utf8')) as { script: string }).script;
  cacheName = script.replace(/\.js$/, '.cache');
});

afterAll(() => rmTmp(dir));

/** A copy of the installed loader and bundle in `name`, with the cache as `cache` leaves it. */
function install(name: string, cache: (path: string) => void): string {
  const at = join(dir, name);
  mkdirSync(at);
  for (const f of [script, 'main.cjs']) copyFileSync(join(CLI_DIR, f), join(at, f));
  cache(join(at, cacheName));
  return at;
}

async function exec(at: string, extraFlags: string[] = []) {
  const status = join(dir, `status-${Math.random().toString(16).slice(2)}`);
  const r = await runProcess(
    process.execPath,
    [...shebangFlags(), ...extraFlags, '--require', join(dir, 'status.cjs'), join(at, 'main.cjs'), 'exec', '--state-dir', join(dir, 'state'), '--policy', join(dir, 'policy.yaml'), '--', 'sh', '-c', 'echo ran'],
    { env: { ...process.env, STATUS_FILE: status }, timeoutMs: 60_000 },
  );
  return { ...r, cache: readFileSync(status, 'utf8') };
}

describe('the code cache fails safe', () => {
  it('the control: the cache as built is accepted', async () => {
    const r = await exec(install('as-built', (p) => copyFileSync(join(CLI_DIR, cacheName), p)));
    expect(r.code, r.stderr).toBe(0);
    expect(r.cache).toBe('accepted');
  }, 60_000);

  it('a cache V8 rejects (other V8 flags): compiled from source, the command runs', async () => {
    const r = await exec(install('rejected', (p) => copyFileSync(join(CLI_DIR, cacheName), p)), ['--max-old-space-size=300']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('ran\n');
    expect(r.stderr).toMatch(/^airlock: session s-[0-9a-f]+: /m);
    expect(r.cache).toBe('rejected');
  }, 60_000);

  it('a cache that cannot be read (a directory in its place): compiled from source, the command runs', async () => {
    const r = await exec(install('unreadable', (p) => mkdirSync(p)));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('ran\n');
    expect(r.stderr).toMatch(/^airlock: session s-[0-9a-f]+: /m);
    expect(r.cache).toBe('absent');
  }, 60_000);

  it('a cache with bytes the build did not write (one appended): not used, the command runs', async () => {
    // Its SHA-256 is not the one the loader holds.
    const r = await exec(install('other', (p) => writeFileSync(p, Buffer.concat([readFileSync(join(CLI_DIR, cacheName)), Buffer.from([0])]))));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('ran\n');
    expect(r.cache).toBe('damaged');
  }, 60_000);
});
