// `airlock audit verify` on logs the real proxy wrote: an untouched log verifies; an edited field, a
// deleted line, two swapped lines, a cut tail and lines spliced in from another session's log are
// each named, with their own exit code; a log rotated by `airlock exec --audit-rotate-size`
// verifies across its files, also after retention removed the oldest, and a missing file is named.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpSync, existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { rmTmp, runCli, startAirlock, startHttpUpstream, tmpDir } from '../helpers/servers.js';
import type { AirlockHandle, TestUpstream } from '../helpers/servers.js';
import { httpViaProxy } from '../helpers/clients.js';
import { parsePolicy } from '../../src/policy/index.js';

const POLICY = 'version: 1\nname: tamper\nallow:\n  - host: api.tamper.test\n';

let upstream: TestUpstream;
let airlock: AirlockHandle;
let work: string;
let sessionA: string;
let sessionB: string;

beforeAll(async () => {
  upstream = await startHttpUpstream();
  airlock = await startAirlock({ policy: POLICY, resolve: { 'api.tamper.test:80': upstream.port } });
  const other = await airlock.runtime.sessions.create(parsePolicy(POLICY, 'tamper.yaml'));
  sessionA = airlock.session.id;
  sessionB = other.id;
  const authB = 'Basic ' + Buffer.from(`${other.id}:${other.token}`).toString('base64');
  for (let i = 0; i < 6; i++) {
    const r = await httpViaProxy({ proxyPort: airlock.port, proxyAuthorization: airlock.proxyAuthorization, url: `http://api.tamper.test/a/${i}` });
    expect(r.status).toBe(200);
    await httpViaProxy({ proxyPort: airlock.port, proxyAuthorization: authB, url: `http://api.tamper.test/b/${i}` });
  }
  const denied = await httpViaProxy({ proxyPort: airlock.port, proxyAuthorization: airlock.proxyAuthorization, url: 'http://elsewhere.test/x' });
  expect(denied.status).toBe(403);
  // Removing the sessions closes their logs (a close record, the head synced).
  await airlock.runtime.sessions.remove(sessionA);
  await airlock.runtime.sessions.remove(sessionB);
  work = tmpDir('airlock-tamper-');
}, 30_000);

afterAll(async () => {
  await airlock?.close();
  await upstream?.close();
  rmTmp(work);
});

let cases = 0;
/** A copy of the state dir (key and both sessions) to tamper with. */
function copy(): { stateDir: string; file: (id: string, name?: string) => string } {
  const stateDir = join(work, `case-${++cases}`);
  cpSync(airlock.stateDir, stateDir, { recursive: true });
  return { stateDir, file: (id, name = 'audit.jsonl') => join(stateDir, 'sessions', id, name) };
}

function lines(file: string): string[] {
  return readFileSync(file, 'utf8').split('\n').slice(0, -1);
}

function verify(stateDir: string, id: string) {
  return runCli(['audit', 'verify', id, '--state-dir', stateDir]);
}

describe('airlock audit verify', () => {
  it('an untouched log verifies (exit 0), closed by its writer', async () => {
    const { stateDir } = copy();
    for (const id of [sessionA, sessionB]) {
      const r = await verify(stateDir, id);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/verified: \d+ lines in 1 file\(s\).*closed by its writer/);
    }
  });

  it('an edited field: exit 3, names the line', async () => {
    const { stateDir, file } = copy();
    const l = lines(file(sessionA));
    const at = l.findIndex((x) => x.includes('"status":200'));
    l[at] = l[at]!.replace('"status":200', '"status":404');
    writeFileSync(file(sessionA), l.join('\n') + '\n');
    const r = await verify(stateDir, sessionA);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(`audit.jsonl line ${at + 1}: edited (its content does not match its MAC)`);
  });

  it('a deleted line: exit 4, names the gap', async () => {
    const { stateDir, file } = copy();
    const l = lines(file(sessionA));
    l.splice(4, 1); // seq 5
    writeFileSync(file(sessionA), l.join('\n') + '\n');
    const r = await verify(stateDir, sessionA);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('audit.jsonl line 5 (seq 6): 1 line (seq 5) deleted before it');
  });

  it('two lines swapped: exit 4, out of order', async () => {
    const { stateDir, file } = copy();
    const l = lines(file(sessionA));
    [l[3], l[4]] = [l[4]!, l[3]!];
    writeFileSync(file(sessionA), l.join('\n') + '\n');
    const r = await verify(stateDir, sessionA);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('audit.jsonl line 4 (seq 5): out of order (seq 4 was expected here; it is at audit.jsonl line 5)');
  });

  it('the tail cut off (whole lines): exit 5, missing tail against the signed head', async () => {
    const { stateDir, file } = copy();
    const l = lines(file(sessionA));
    writeFileSync(file(sessionA), l.slice(0, -3).join('\n') + '\n');
    const r = await verify(stateDir, sessionA);
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(/missing tail: the log ends at seq \d+, its signed head .* records seq \d+: 3 line\(s\) cut off the end/);
  });

  it('a head file rewritten to match the cut log: exit 5, not signed', async () => {
    const { stateDir, file } = copy();
    const l = lines(file(sessionA));
    writeFileSync(file(sessionA), l.slice(0, -3).join('\n') + '\n');
    const head = JSON.parse(readFileSync(file(sessionA, 'audit.head'), 'utf8')) as Record<string, unknown>;
    const last = JSON.parse(l[l.length - 4]!) as { seq: number; mac: string };
    writeFileSync(file(sessionA, 'audit.head'), JSON.stringify({ ...head, seq: last.seq, mac: last.mac }));
    const r = await verify(stateDir, sessionA);
    expect(r.code).toBe(5);
    expect(r.stderr).toContain('is not signed for this session');
  });

  it("another session's lines spliced in: exit 6, names the session", async () => {
    const { stateDir, file } = copy();
    // B's lines after A's first four (their MACs are valid: same key).
    const a = lines(file(sessionA));
    const b = lines(file(sessionB));
    writeFileSync(file(sessionA), [...a.slice(0, 4), ...b.slice(1, 3), ...a.slice(4)].join('\n') + '\n');
    const r = await verify(stateDir, sessionA);
    expect(r.code).toBe(6);
    expect(r.stderr).toContain(`audit.jsonl line 5: a line of session "${sessionB}", spliced into ${sessionA}'s log`);
    // B's whole file put in place of A's.
    cpSync(file(sessionB), file(sessionA));
    expect((await verify(stateDir, sessionA)).code).toBe(6);
  });

  it('a spliced line with its session rewritten is an edit (exit 3)', async () => {
    const { stateDir, file } = copy();
    const a = lines(file(sessionA));
    const b = lines(file(sessionB));
    writeFileSync(file(sessionA), [...a.slice(0, 4), b[2]!.replaceAll(sessionB, sessionA), ...a.slice(4)].join('\n') + '\n');
    expect((await verify(stateDir, sessionA)).code).toBe(3);
  });

  it('usage errors: exit 2', async () => {
    const { stateDir } = copy();
    expect((await verify(stateDir, 's-000000000000')).code).toBe(2);
    rmSync(join(stateDir, 'audit.key'));
    const r = await verify(stateDir, sessionA);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('no audit key');
  });

  it('the key is owner-only and outside every session directory', () => {
    const key = join(airlock.stateDir, 'audit.key');
    expect(statSync(key).mode & 0o777).toBe(0o600);
    for (const id of [sessionA, sessionB]) expect(readdirSync(join(airlock.stateDir, 'sessions', id))).not.toContain('audit.key');
  });
});

describe('rotation and retention (airlock exec --audit-rotate-size, --audit-retain)', () => {
  let stateDir: string;
  let id: string;

  beforeAll(async () => {
    stateDir = join(work, 'rotated');
    writeFileSync(join(work, 'policy.yaml'), POLICY);
    const urls = Array.from({ length: 60 }, (_, i) => `http://api.tamper.test/r/${i}`);
    const r = await runCli([
      'exec', '--policy', join(work, 'policy.yaml'), '--state-dir', stateDir, '--resolve', `api.tamper.test:80:127.0.0.1:${upstream.port}`,
      '--audit-rotate-size', '4K', '--audit-retain', '3', '--', 'curl', '-sS', '-o', '/dev/null', ...urls,
    ], { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    [id] = readdirSync(join(stateDir, 'sessions'));
  }, 90_000);

  it('rotated at the size, three rotated files kept, and the chain verifies across them', async () => {
    const dir = join(stateDir, 'sessions', id);
    const rotated = readdirSync(dir).filter((f) => /^audit\.\d+\.jsonl$/.test(f));
    expect(rotated).toHaveLength(3);
    expect(existsSync(join(dir, 'audit.0.jsonl'))).toBe(false); // removed by retention
    for (const f of rotated) expect(statSync(join(dir, f)).size).toBeLessThan(4096 + 2048);
    const r = await verify(stateDir, id);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/verified: \d+ lines in 4 file\(s\)/);
    // Every request is still in the files kept or was in those removed: the last ones are all here.
    const report = await runCli(['audit', id, '--state-dir', stateDir]);
    expect(report.stdout).toContain('/r/59');
  });

  it('a rotated file removed by hand: exit 5', async () => {
    const dir = join(stateDir, 'sessions', id);
    const copyDir = join(work, 'rotated-copy');
    cpSync(stateDir, copyDir, { recursive: true });
    const rotated = readdirSync(dir).filter((f) => /^audit\.\d+\.jsonl$/.test(f)).sort((a, b) => Number(a.split('.')[1]) - Number(b.split('.')[1]));
    rmSync(join(copyDir, 'sessions', id, rotated[1]!));
    const r = await verify(copyDir, id);
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(/file \d+ of the log is missing before it/);
    // The oldest kept file removed too: no prune record covers it.
    const copy2 = join(work, 'rotated-copy2');
    cpSync(stateDir, copy2, { recursive: true });
    rmSync(join(copy2, 'sessions', id, rotated[0]!));
    const r2 = await verify(copy2, id);
    expect(r2.code).toBe(5);
    expect(r2.stderr).toContain('no prune record says retention removed them');
  });
});
