// A 100 MB git push through Airlock in its own process (bench/airlock-proxy.mjs over dist/), to
// the real git http-backend over HTTPS: once to a host whose rule has git: (every ref update
// checked, the pack read as it streams, the fast-forward proven) and once to a host whose rule
// has none (the body streamed through unread). Prints throughput and the proxy's RSS.
//   npm run build && npx vitest run -c bench/vitest.measure.config.ts
import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { createTestPki, isolatedGitEnv, REPO_ROOT, rmTmp, runProcess, startGitServer, tmpDir } from '../test/helpers/servers.js';

const MB = 1024 * 1024;
const SIZE_MB = Number(process.env.AIRLOCK_GIT_BENCH_MB ?? 100);

/** CPU seconds (user + system) a process has used. */
function cpuOf(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

describe('git push through Airlock', () => {
  it(`${SIZE_MB} MB push: git rule vs. no git rule`, async () => {
    const pki = await createTestPki();
    const server = await startGitServer({ pki, names: ['github.com', 'git.bench.test'] });
    const root = dirname(server.repoDir);
    const work = tmpDir('airlock-git-bench-');
    const genv = isolatedGitEnv(work);
    for (const name of ['repo2.git', 'repo3.git']) {
      await runProcess('git', ['clone', '-q', '--bare', server.repoDir, join(root, name)], { env: genv });
      await runProcess('git', ['config', 'http.receivepack', 'true'], { cwd: join(root, name), env: genv });
    }
    writeFileSync(join(work, 'hosts'), '127.0.0.1 github.com git.bench.test\n');
    writeFileSync(
      join(work, 'policy.yaml'),
      `version: 1\nname: git-bench\nallow:\n  - host: github.com\n    ports: [${server.port}]\n    git:\n      fetch: ["*"]\n      push:\n        - repo: "*"\n          branches: ["*"]\n  - host: git.bench.test\n    ports: [${server.port}]\n`,
    );
    const proxy = spawn(
      process.execPath,
      [join(REPO_ROOT, 'bench/airlock-proxy.mjs'), '--policy', join(work, 'policy.yaml'), '--state-dir', join(work, 'state'), '--upstream-ca', pki.caFile, '--hosts', join(work, 'hosts'), '--upstream-port', String(server.port)],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      const ready = JSON.parse(await new Promise<string>((resolve) => createInterface({ input: proxy.stdout! }).once('line', resolve)));
      // Big files are not delta-searched (as git does for files over core.bigFileThreshold), so the
      // client's own CPU time does not hide the proxy's.
      const gitConfig = { GIT_CONFIG_COUNT: '1', GIT_CONFIG_KEY_0: 'core.bigFileThreshold', GIT_CONFIG_VALUE_0: '1m' };
      const env = isolatedGitEnv(work, { HTTPS_PROXY: ready.session.proxy_url, GIT_SSL_CAINFO: ready.session.bundle, ...gitConfig });
      // The same push straight to the server, for the machine's own limit.
      const direct = isolatedGitEnv(work, {
        GIT_SSL_CAINFO: pki.caFile,
        GIT_CONFIG_COUNT: '2',
        GIT_CONFIG_KEY_0: 'core.bigFileThreshold',
        GIT_CONFIG_VALUE_0: '1m',
        GIT_CONFIG_KEY_1: 'http.curloptResolve',
        GIT_CONFIG_VALUE_1: `git.bench.test:${server.port}:127.0.0.1`,
      });
      const rows: string[] = [];
      const targets = {
        git: { name: 'git rule (github.com)', url: `https://github.com:${server.port}/repo.git`, dir: join(work, 'clone-git') },
        plain: { name: 'no git rule (git.bench.test)', url: `https://git.bench.test:${server.port}/repo2.git`, dir: join(work, 'clone-plain') },
        direct: { name: 'direct, no proxy (git.bench.test)', url: `https://git.bench.test:${server.port}/repo3.git`, dir: join(work, 'clone-direct') },
      };
      for (const t of Object.values(targets)) {
        const clone = await runProcess('git', ['clone', '-q', t.url, t.dir], { env: t === targets.direct ? direct : env, cwd: work });
        expect(clone.code, clone.stderr).toBe(0);
        mkdirSync(join(t.dir, 'data'));
      }
      const rounds = Number(process.env.AIRLOCK_GIT_BENCH_ROUNDS ?? 3);
      const order = [targets.direct, ...Array.from({ length: rounds }, () => [targets.git, targets.plain, targets.direct]).flat()];
      for (const t of order) {
        const tenv = t === targets.direct ? direct : env;
        // Fresh incompressible blobs each round: the pack is SIZE_MB whatever was pushed before.
        for (let i = 0; i < SIZE_MB / 5; i++) writeFileSync(join(t.dir, 'data', `blob-${i}`), randomBytes(5 * MB));
        for (const args of [['add', 'data'], ['commit', '-q', '-m', 'big']]) {
          const r = await runProcess('git', args, { cwd: t.dir, env: tenv });
          expect(r.code, r.stderr).toBe(0);
        }
        const local = (await runProcess('git', ['rev-parse', 'HEAD'], { cwd: t.dir, env: tenv })).stdout.trim();
        const baseline = rssOf(proxy.pid!);
        const cpuBefore = cpuOf(proxy.pid!);
        let peak = baseline;
        const sampler = setInterval(() => (peak = Math.max(peak, rssOf(proxy.pid!))), 50);
        const started = performance.now();
        const push = await runProcess('git', ['push', '-q', 'origin', 'HEAD:main'], { cwd: t.dir, env: tenv, timeoutMs: 300_000 });
        const seconds = (performance.now() - started) / 1000;
        clearInterval(sampler);
        const cpu = t === targets.direct ? null : cpuOf(proxy.pid!) - cpuBefore;
        expect(push.code, push.stderr).toBe(0);
        const bare = join(root, t.url.replace(/^.*\//, ''));
        expect((await runProcess('git', ['rev-parse', 'main'], { cwd: bare, env: genv })).stdout.trim(), 'the push landed').toBe(local);
        const proxyCells = cpu === null ? '- | - | - | -' : `${cpu.toFixed(2)} s | ${(baseline / MB).toFixed(0)} MiB | ${(peak / MB).toFixed(0)} MiB | +${((peak - baseline) / MB).toFixed(0)} MiB`;
        rows.push(`| ${t.name} | ${seconds.toFixed(2)} s | ${(SIZE_MB / seconds).toFixed(1)} MB/s | ${proxyCells} |`);
        console.log(rows[rows.length - 1]);
      }
      const audit = readFileSync(ready.session.audit, 'utf8');
      expect(audit).toMatch(/refs\/heads\/main update allowed \(fast-forward\)/);
      console.log(`\n${SIZE_MB} MB push (incompressible blobs), proxy in its own process:\n\n| target | push time | throughput | proxy CPU | proxy RSS before | proxy RSS peak | growth |\n|---|---|---|---|---|---|---|\n${rows.join('\n')}\n`);
    } finally {
      proxy.kill('SIGTERM');
      await server.close();
      rmTmp(work, pki.dir);
    }
  });
});
