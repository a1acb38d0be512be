// `airlock run --pids-limit/--memory/--cpus` and the policy's `container:` section as an operator
// meets them before any container starts: bad values are usage errors naming the flag, and
// `policy check` shows the limits.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { rmTmp, runCli, tmpDir } from '../helpers/servers.js';

let dir: string;
let policy: string;
beforeAll(() => {
  dir = tmpDir();
  policy = join(dir, 'p.yaml');
  writeFileSync(policy, 'version: 1\nname: p\ncontainer:\n  pids: 256\n  memory: 1536m\n  cpus: 1.5\n');
});
afterAll(() => rmTmp(dir));

describe.concurrent('airlock run limit flags', () => {
  it.each([
    [['--memory', '4x'], '--memory 4x: "4x" is not a size', 'e.g. --memory 4g'],
    [['--memory', '1m'], '--memory 1m: "1m" is less than 32 MiB', 'e.g. --memory 4g'],
    [['--pids-limit', '10'], '--pids-limit 10: 10 is not an integer from 32 to 4194304', 'e.g. --pids-limit 512'],
    [['--pids-limit', 'many'], '--pids-limit many: "many" is not an integer from 32 to 4194304', 'e.g. --pids-limit 512'],
    [['--cpus', '0'], '--cpus 0: 0 is not a number of CPUs from 0.01 to 1024', 'e.g. --cpus 2'],
    [['--cpus', '1,5'], '--cpus 1,5: "1,5" is not a number of CPUs from 0.01 to 1024', 'e.g. --cpus 2'],
  ])('%j is a usage error naming the flag, before Docker is asked anything', async (flags, problem, hint) => {
    const r = await runCli(['run', '--policy', policy, '--image', 'none:none', ...flags, '--', 'true'], {
      env: { ...process.env, DOCKER_HOST: 'unix:///nonexistent/docker.sock' },
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`airlock: ${problem}`);
    expect(r.stderr).toContain(hint);
    expect(r.stderr).not.toContain('Docker engine');
  });
});

describe('airlock policy check', () => {
  it('lists the container limits a policy sets', async () => {
    const r = await runCli(['policy', 'check', policy]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('  container: pids 256; memory 1.5 GiB; cpus 1.5 (airlock run; flags override)\n');
  });

  it('says which limits are left to the defaults', async () => {
    const partial = join(dir, 'partial.yaml');
    writeFileSync(partial, 'version: 1\nname: partial\ncontainer: { memory: 8g }\n');
    const r = await runCli(['policy', 'check', partial]);
    expect(r.stdout).toContain('  container: pids default; memory 8 GiB; cpus default (airlock run; flags override)\n');
  });
});
