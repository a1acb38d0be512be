// A credential whose secret is missing is a clear start-up error, never a silent pass-through.
import { describe, it, expect } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli, tmpDir, rmTmp } from '../helpers/servers.js';

describe('airlock exec with a missing secret', () => {
  it('exits 2 naming the credential and the variable, without running the command or a stack trace', async () => {
    const dir = tmpDir();
    const policy = join(dir, 'policy.yaml');
    writeFileSync(policy, 'version: 1\nname: t\nallow: []\ncredentials:\n  - preset: github\n    secret: { env: AIRLOCK_TEST_MISSING_TOKEN }\n');
    const env = { ...process.env };
    delete env.AIRLOCK_TEST_MISSING_TOKEN;
    const marker = join(dir, 'ran');
    const r = await runCli(['exec', '--policy', policy, '--state-dir', join(dir, 'state'), '--', 'touch', marker], { env });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('credential "github"');
    expect(r.stderr).toContain('AIRLOCK_TEST_MISSING_TOKEN');
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    const { existsSync } = await import('node:fs');
    expect(existsSync(marker)).toBe(false);
    rmTmp(dir);
  });
});
