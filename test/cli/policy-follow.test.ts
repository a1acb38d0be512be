// `airlock run` and a policy file inside the workspace the container mounts: the session could
// rewrite that file, so it is not watched (reload only when the operator asks).
import { afterAll, describe, expect, it } from 'vitest';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { policyFollowing } from '../../src/cli/run.js';
import { rmTmp, tmpDir } from '../helpers/servers.js';

const dir = tmpDir('airlock-follow-');
afterAll(() => rmTmp(dir));

describe('policyFollowing', () => {
  const workspace = join(dir, 'ws');
  mkdirSync(join(workspace, 'sub'), { recursive: true });
  mkdirSync(join(dir, 'ws-sibling'));
  for (const f of [join(dir, 'policy.yaml'), join(workspace, 'sub', 'policy.yaml'), join(dir, 'ws-sibling', 'policy.yaml')]) writeFileSync(f, 'version: 1\nname: x\n');
  symlinkSync(join(workspace, 'sub', 'policy.yaml'), join(dir, 'link.yaml'));

  it('watches a policy file outside the workspace, and any when the workspace is copied in', () => {
    const notices: string[] = [];
    expect(policyFollowing(join(dir, 'policy.yaml'), workspace, (l) => notices.push(l))).toEqual({ file: join(dir, 'policy.yaml'), watch: true });
    expect(policyFollowing(join(dir, 'ws-sibling', 'policy.yaml'), workspace, (l) => notices.push(l)).watch).toBe(true);
    expect(policyFollowing(join(workspace, 'sub', 'policy.yaml'), undefined, (l) => notices.push(l)).watch).toBe(true);
    expect(notices).toEqual([]);
  });

  it('does not watch one inside the mounted workspace, also when reached through a symbolic link, and says so', () => {
    const notices: string[] = [];
    expect(policyFollowing(join(workspace, 'sub', 'policy.yaml'), workspace, (l) => notices.push(l))).toEqual({ file: join(workspace, 'sub', 'policy.yaml'), watch: false });
    expect(policyFollowing(join(dir, 'link.yaml'), workspace, (l) => notices.push(l)).watch).toBe(false);
    expect(notices[0]).toContain('not watching');
    expect(notices[0]).toContain('inside the workspace the session can write');
  });
});
