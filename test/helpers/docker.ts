// Docker test plumbing: one rule for when Docker tests run, and one shared agent image.
// Without an engine, Docker tests skip LOUDLY; with CI set, a missing engine fails instead.
import { describe } from 'vitest';
import { existsSync, mkdtempSync, openSync, closeSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { runCli, runProcess, sleep } from './servers.js';

export const AGENT_TEST_IMAGE = 'airlock-agent:test';
export const RELAY_TEST_IMAGE = 'airlock-relay:test';

let availability: boolean | undefined;

export function dockerAvailable(): boolean {
  if (availability === undefined) {
    try {
      execFileSync('docker', ['info', '--format', '{{.ServerVersion}}'], { stdio: 'pipe', timeout: 15_000 });
      availability = true;
    } catch {
      availability = false;
    }
  }
  return availability;
}

/**
 * describe() for tests that need a real Docker engine. No engine: skipped with a loud warning,
 * unless CI is set, where the suite fails (CI must start an engine).
 */
export function describeDocker(name: string, fn: () => void): void {
  if (dockerAvailable()) {
    describe(name, fn);
    return;
  }
  if (process.env.CI) {
    describe(name, () => {
      throw new Error(`CI is set but no Docker engine answers \`docker info\`: CI must start one (.ci/docker-engine.sh)`);
    });
    return;
  }
  console.warn(`\n*** SKIPPING Docker tests "${name}": no Docker engine answers \`docker info\`. Start dockerd to run them. ***\n`);
  describe.skip(name, fn);
}

/** The host CA bundle, for builds on networks that inspect TLS (passed as --build-ca). */
export function hostBuildCa(): string | undefined {
  const file = '/etc/ssl/certs/ca-certificates.crt';
  return existsSync(file) ? file : undefined;
}

function imageExists(tag: string): boolean {
  try {
    execFileSync('docker', ['image', 'inspect', tag], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

/**
 * Builds the agent image once per machine (test files run in parallel: a lock file makes the
 * others wait), with `airlock image build`.
 */
export async function ensureAgentImage(): Promise<string> {
  if (imageExists(AGENT_TEST_IMAGE)) return AGENT_TEST_IMAGE;
  const lock = join(tmpdir(), 'airlock-agent-image.lock');
  for (;;) {
    try {
      closeSync(openSync(lock, 'wx'));
      break;
    } catch {
      // Someone else is building; a lock older than 30 minutes is from a dead run.
      try {
        if (Date.now() - statSync(lock).mtimeMs > 30 * 60_000) rmSync(lock, { force: true });
      } catch {
        /* gone already */
      }
      await sleep(2_000);
      if (imageExists(AGENT_TEST_IMAGE)) return AGENT_TEST_IMAGE;
    }
  }
  try {
    if (imageExists(AGENT_TEST_IMAGE)) return AGENT_TEST_IMAGE;
    const ca = hostBuildCa();
    const r = await runCli(['image', 'build', '--tag', AGENT_TEST_IMAGE, ...(ca ? ['--build-ca', ca] : [])], { timeoutMs: 25 * 60_000 });
    if (r.code !== 0) throw new Error(`airlock image build failed (${r.code}):\n${r.stderr.slice(-4000)}`);
    return AGENT_TEST_IMAGE;
  } finally {
    rmSync(lock, { force: true });
  }
}

/**
 * Builds a small test image from a Dockerfile's text (FROM an image already in the engine) on the
 * system engine, labelled so the test can find and remove it; returns the tag.
 */
export async function buildTestImage(tag: string, dockerfile: string, label: string, timeoutMs = 600_000): Promise<string> {
  const ctx = mkdtempSync(join(tmpdir(), 'airlock-image-ctx-'));
  try {
    writeFileSync(join(ctx, 'Dockerfile'), dockerfile);
    const r = await runProcess('docker', ['build', '-q', '--label', label, '-t', tag, ctx], { timeoutMs });
    if (r.code !== 0) throw new Error(`docker build ${tag} failed (${r.code}): ${r.stderr}`);
    return tag;
  } finally {
    rmSync(ctx, { recursive: true, force: true });
  }
}

/** Removes the images buildTestImage made with `label`. */
export async function removeTestImages(label: string): Promise<void> {
  const ids = (await runProcess('docker', ['image', 'ls', '-q', '--filter', `label=${label}`])).stdout.split('\n').filter(Boolean);
  if (ids.length) await runProcess('docker', ['image', 'rm', '-f', ...new Set(ids)]);
}

/** Builds the relay image once per machine with `airlock image build --only relay` (small: seconds). */
export async function ensureRelayImage(): Promise<string> {
  if (imageExists(RELAY_TEST_IMAGE)) return RELAY_TEST_IMAGE;
  const r = await runCli(['image', 'build', '--only', 'relay', '--relay-tag', RELAY_TEST_IMAGE], { timeoutMs: 15 * 60_000 });
  if (r.code !== 0 && !imageExists(RELAY_TEST_IMAGE)) throw new Error(`airlock image build --only relay failed (${r.code}):\n${r.stderr.slice(-4000)}`);
  return RELAY_TEST_IMAGE;
}

/**
 * describe() for tests that need more than a Docker engine (root, a package): `missing` says what
 * is missing, or null. Like every Docker test they skip loudly only when no engine answers (and
 * fail then in CI); anything else missing fails the suite, saying what to install.
 */
export function describeNeeding(name: string, missing: string | null, fn: () => void): void {
  if (missing === null || !dockerAvailable()) return describeDocker(name, fn);
  describe(name, () => {
    throw new Error(`${name}: ${missing}; .ci/run shows what this suite needs`);
  });
}
