// What `airlock exec` loads before its command runs: the packages that only some sessions need
// (the ASN.1 library for leaf certificates, graphql for GitHub GraphQL rules, dockerode) wait for
// first use, so a session starts without paying for them (README, Benchmark: start-up).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { rmTmp, runProcess, tmpDir } from '../helpers/servers.js';

const CLI = process.env.AIRLOCK_STARTUP_CLI ?? join(import.meta.dirname, '..', '..', 'dist', 'cli', 'main.js');
let dir: string;

beforeAll(() => {
  dir = tmpDir('airlock-exec-startup-');
  writeFileSync(join(dir, 'policy.yaml'), 'version: 1\nname: startup\nallow:\n  - host: api.github.com\n');
  // Records every package the CLI process loads, CommonJS and ESM alike (they all go through
  // Module._load or the ESM loader's resolve, which reads package.json: watch the file reads).
  writeFileSync(
    join(dir, 'record.cjs'),
    `const fs = require('node:fs'); const seen = new Set(); const orig = fs.readFileSync;
     fs.readFileSync = function (p, ...rest) { const m = /node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(String(p)); if (m) seen.add(m[1]); return orig.call(this, p, ...rest); };
     const M = require('node:module'); const load = M._load;
     M._load = function (req, parent, main) { const r = load.apply(this, arguments); try { const f = M._resolveFilename(req, parent); const m = /node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(f); if (m) seen.add(m[1]); } catch {} return r; };
     process.on('exit', () => fs.writeFileSync(process.env.RECORD_DIR + '/loaded.json', JSON.stringify([...seen])));`,
  );
});

afterAll(() => rmTmp(dir));

describe('airlock exec start-up', () => {
  it('runs its command without loading @peculiar/x509, its ASN.1 packages, graphql, dockerode, the AWS, Google or OpenTelemetry libraries', async () => {
    const r = await runProcess(process.execPath, ['--require', join(dir, 'record.cjs'), CLI, 'exec', '--state-dir', join(dir, 'state'), '--policy', join(dir, 'policy.yaml'), '--', 'true'], {
      env: { ...process.env, RECORD_DIR: dir },
      timeoutMs: 60_000,
    });
    expect(r.code, r.stderr).toBe(0);
    const loaded: string[] = JSON.parse(readFileSync(join(dir, 'loaded.json'), 'utf8'));
    // The recorder sees what is loaded (so an empty list cannot pass for a clean one).
    expect(loaded).toEqual(expect.arrayContaining(['yaml', 'commander', 'pino']));
    const heavy = (p: string) =>
      ['@peculiar/', '@aws-sdk/', '@smithy/', '@opentelemetry/'].some((scope) => p.startsWith(scope)) ||
      ['asn1js', 'tsyringe', 'graphql', 'dockerode', 'google-auth-library', 'gaxios'].includes(p);
    expect(loaded.filter(heavy)).toEqual([]);
  }, 90_000);
});
