// Which roots an `airlock exec` session's upstream TLS is verified against. Without --upstream-ca
// the proxy uses Node's default store (Node's bundled roots and NODE_EXTRA_CA_CERTS) instead of
// a context made from the same roots as text, which parsed every certificate again before the
// first request (ARCHITECTURE.md, Start-up): an upstream whose CA only NODE_EXTRA_CA_CERTS names
// is trusted, one whose CA no root names is refused, and --upstream-ca still adds its file.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTestPki, rmTmp, runCli, startHttpsUpstream, tmpDir } from '../helpers/servers.js';
import type { TestPki, TestUpstream } from '../helpers/servers.js';

let pki: TestPki;
let api: TestUpstream;
let dir: string;
let policyFile: string;

beforeAll(async () => {
  pki = await createTestPki();
  api = await startHttpsUpstream({ pki, names: ['api.github.com'] });
  dir = tmpDir('airlock-upstream-roots-');
  policyFile = join(dir, 'policy.yaml');
  writeFileSync(policyFile, 'version: 1\nname: roots\nallow:\n  - host: api.github.com\n');
});

afterAll(async () => {
  await api?.close();
  rmTmp(dir, pki?.dir);
});

/** One GET of api.github.com through a fresh `airlock exec` session; the proxy's environment as given. */
async function get(path: string, extraCa: string[], env: NodeJS.ProcessEnv) {
  const stateDir = tmpDir('airlock-roots-state-');
  try {
    const ca = extraCa.flatMap((f) => ['--upstream-ca', f]);
    const r = await runCli(
      ['exec', '--policy', policyFile, '--state-dir', stateDir, '--resolve', `api.github.com:443:127.0.0.1:${api.port}`, ...ca, '--',
        'curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '10', `https://api.github.com${path}`],
      { env, timeoutMs: 30_000 },
    );
    return { ...r, seen: api.requests.filter((q) => q.url === path).length };
  } finally {
    rmTmp(stateDir);
  }
}

const without = (env: NodeJS.ProcessEnv, name: string) => Object.fromEntries(Object.entries(env).filter(([k]) => k !== name));

describe('upstream roots of an exec session', () => {
  it('trusts an upstream whose CA only NODE_EXTRA_CA_CERTS names (Node default store, no --upstream-ca)', async () => {
    const r = await get('/extra-ca', [], { ...process.env, NODE_EXTRA_CA_CERTS: pki.caFile });
    expect(r.stdout, r.stderr).toBe('200');
    expect(r.seen).toBe(1);
  }, 40_000);

  it('refuses an upstream whose CA no root names: 502, and the upstream never sees the request', async () => {
    const r = await get('/no-ca', [], without(process.env, 'NODE_EXTRA_CA_CERTS'));
    expect(r.stdout, r.stderr).toBe('502');
    expect(r.seen).toBe(0);
  }, 40_000);

  it('--upstream-ca adds its file to the roots (NODE_EXTRA_CA_CERTS unset)', async () => {
    const r = await get('/upstream-ca', [pki.caFile], without(process.env, 'NODE_EXTRA_CA_CERTS'));
    expect(r.stdout, r.stderr).toBe('200');
    expect(r.seen).toBe(1);
  }, 40_000);
});
