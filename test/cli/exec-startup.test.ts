// What `airlock exec` loads before its command runs, and what its start-up costs. The CLI is one
// bundle (dist/cli/main.js and its chunks, scripts/bundle.mjs) and each command loads its own
// modules: `exec` loads no file of the launcher, the daemon client or the live view, and no package
// from node_modules; those that only some sessions need (the ASN.1 library for leaf certificates,
// graphql, ws, jose, dockerode, the AWS, Google and OpenTelemetry libraries) wait for first use
// (README, Benchmark: start-up; ARCHITECTURE.md, Start-up).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { rmTmp, runProcess, tmpDir } from '../helpers/servers.js';

const CLI = process.env.AIRLOCK_STARTUP_CLI ?? join(import.meta.dirname, '..', '..', 'dist', 'cli', 'main.js');
// The loader reports real paths.
const CLI_REAL = realpathSync(CLI);
const CLI_DIR = dirname(CLI_REAL);
let dir: string;

/** The node flags of the CLI's `#!/usr/bin/env -S node ...` line: what the installed command runs with. */
function shebangFlags(): string[] {
  const m = /^#!\/usr\/bin\/env -S node(.*)$/.exec(readFileSync(CLI, 'utf8').split('\n')[0]!);
  return m ? m[1]!.trim().split(/\s+/).filter(Boolean) : [];
}

beforeAll(() => {
  dir = tmpDir('airlock-exec-startup-');
  writeFileSync(join(dir, 'policy.yaml'), 'version: 1\nname: startup\nallow:\n  - host: api.github.com\n');
  // Every file the process loads, ESM (the loader's hooks, on their own thread) and CommonJS
  // (Module._load), appended to loaded.txt as it loads; "SPAWN" when the command is started.
  writeFileSync(
    join(dir, 'hooks.mjs'),
    `import { appendFileSync } from 'node:fs';
     export async function load(url, context, next) { appendFileSync(process.env.RECORD_DIR + '/loaded.txt', url + '\\n'); return next(url, context); }`,
  );
  writeFileSync(
    join(dir, 'record.cjs'),
    `const fs = require('node:fs'); const M = require('node:module'); const out = process.env.RECORD_DIR + '/loaded.txt';
     M.register(require('node:url').pathToFileURL(process.env.RECORD_DIR + '/hooks.mjs'));
     const load = M._load;
     M._load = function (req, parent) { try { fs.appendFileSync(out, M._resolveFilename(req, parent) + '\\n'); } catch {} return load.apply(this, arguments); };
     const cp = require('node:child_process'); const spawn = cp.spawn;
     cp.spawn = function () { fs.appendFileSync(out, 'SPAWN\\n'); return spawn.apply(this, arguments); };`,
  );
  // The process's own CPU time (user + system), written at exit.
  writeFileSync(join(dir, 'cpu.cjs'), `process.on('exit', () => { const u = process.cpuUsage(); require('node:fs').appendFileSync(process.env.CPU_FILE, (u.user + u.system) / 1000 + '\\n'); });`);
});

afterAll(() => rmTmp(dir));

describe('airlock exec start-up', () => {
  it('starts its command having loaded only the bundle chunks of exec and the proxy: no launcher, daemon client, view, nor any package from node_modules', async () => {
    const r = await runProcess(process.execPath, ['--require', join(dir, 'record.cjs'), CLI, 'exec', '--state-dir', join(dir, 'state'), '--policy', join(dir, 'policy.yaml'), '--', 'true'], {
      env: { ...process.env, RECORD_DIR: dir },
      timeoutMs: 60_000,
    });
    expect(r.code, r.stderr).toBe(0);
    const lines = readFileSync(join(dir, 'loaded.txt'), 'utf8').split('\n').filter(Boolean);
    const spawnAt = lines.indexOf('SPAWN');
    // The recorder sees the CLI itself load, and the command being started.
    expect(spawnAt).toBeGreaterThan(0);
    const before = [...new Set(lines.slice(0, spawnAt).map((l) => (l.startsWith('file:') ? new URL(l).pathname : l)))].filter((l) => l.startsWith('/'));
    expect(before).toContain(CLI_REAL);
    expect(before.filter((f) => f.includes('/node_modules/'))).toEqual([]);
    // Only bundle files (a build without the bundle loads ~120 files of dist/ one by one).
    const files = before.map((f) => relative(CLI_DIR, f));
    expect(files.filter((f) => !/^(main|chunk-[A-Z0-9]+)\.js$/.test(f))).toEqual([]);
    // What those chunks hold, from the bundle's own record (scripts/bundle.mjs).
    const holds: Record<string, string[]> = JSON.parse(readFileSync(join(CLI_DIR, 'bundle.json'), 'utf8'));
    const sources = files.flatMap((f) => holds[f] ?? [`(not in bundle.json: ${f})`]);
    expect(sources).toEqual(expect.arrayContaining(['cli/main.js', 'cli/exec.js', 'proxy/server.js', 'commander', 'yaml', 'pino']));
    const notForExec = (s: string) =>
      // (launcher/errors.js is one error class, which main.ts tells apart when it reports.)
      (s.startsWith('launcher/') && s !== 'launcher/errors.js') ||
      s.startsWith('view/') ||
      s.startsWith('(not in') ||
      ['cli/daemon.js', 'cli/run.js', 'cli/image.js', 'cli/ui.js', 'cli/operator.js', 'cli/docker.js', 'audit/suggest.js', 'audit/verify.js'].includes(s) ||
      ['@peculiar/', '@aws-sdk/', '@smithy/', '@opentelemetry/'].some((scope) => s.startsWith(scope)) ||
      ['asn1js', 'tsyringe', 'graphql', 'ws', 'jose', 'diff', 'dockerode', 'google-auth-library', 'gaxios', 'tar-fs', 'tar-stream'].includes(s);
    expect(sources.filter(notForExec)).toEqual([]);
  }, 90_000);

  // A bound on CPU time, not wall time: on a loaded machine (CI runs test files in parallel on two
  // CPUs) waiting for a CPU lengthens wall time without limit, while the CPU a process uses grows
  // far less, and about as much for `node -e 0` measured between the same runs. `airlock exec --
  // true` used 7× the CPU of `node -e 0` before the bundle and the per-command loading, 4.5× with
  // the loading alone, ~3.2× with both (README, Benchmark: start-up): 5× fails only if start-up
  // falls back to about where it was, never on noise.
  it('uses at most 5× the CPU time of `node -e 0` (medians of 5 interleaved runs)', async () => {
    const cpu = { node: join(dir, 'cpu-node.txt'), exec: join(dir, 'cpu-exec.txt') };
    const flags = shebangFlags();
    for (let i = 0; i < 5; i++) {
      const n = await runProcess(process.execPath, ['--require', join(dir, 'cpu.cjs'), '-e', '0'], { env: { ...process.env, CPU_FILE: cpu.node } });
      expect(n.code, n.stderr).toBe(0);
      const e = await runProcess(process.execPath, [...flags, '--require', join(dir, 'cpu.cjs'), CLI, 'exec', '--state-dir', join(dir, 'state'), '--policy', join(dir, 'policy.yaml'), '--', 'true'], {
        env: { ...process.env, CPU_FILE: cpu.exec },
        timeoutMs: 60_000,
      });
      expect(e.code, e.stderr).toBe(0);
    }
    const median = (file: string) => {
      const v = readFileSync(file, 'utf8').split('\n').filter(Boolean).map(Number).sort((a, b) => a - b);
      expect(v).toHaveLength(5);
      return v[2]!;
    };
    const [node, exec] = [median(cpu.node), median(cpu.exec)];
    expect(exec, `airlock exec -- true: ${exec} ms of CPU; node -e 0: ${node} ms`).toBeLessThanOrEqual(5 * node);
  }, 120_000);
});
