// `airlock image build` and `airlock doctor` against a real Docker engine (see test/helpers/docker.ts
// for when this runs, skips or fails). The build takes minutes the first time; later tests reuse it.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import Docker from 'dockerode';
import { describeDocker, ensureAgentImage, hostBuildCa } from '../helpers/docker.js';
import { runCli, tmpDir } from '../helpers/servers.js';
import { tarOf } from '../../src/launcher/tar.js';

// Its own tag: other test files share AGENT_TEST_IMAGE; this file builds with a marker build CA.
const TAG = 'airlock-agent:image-test';
const BASE = 'debian:bookworm-slim';
const MINUTE = 60_000;
// A CA certificate (key discarded) used only as bytes to look for: fixed, so reruns hit the
// build cache instead of leaving a new builder-stage image behind each time.
const MARKER = fileURLToPath(new URL('./fixtures/build-ca-marker.pem', import.meta.url));

let client: Docker | undefined;
const docker = () => (client ??= new Docker());

async function airlock(args: string[], timeoutMs = 5 * MINUTE): Promise<{ code: number | null; out: string }> {
  const r = await runCli(args, { timeoutMs });
  return { code: r.code, out: r.stdout + r.stderr };
}

const tail = (text: string, lines = 40) => text.trim().split('\n').slice(-lines).join('\n');

/** Lines of base64 (64 chars) in a PEM body: any of them in an image means the PEM leaked. */
function pemLines(pem: string): string[] {
  return pem.split('\n').filter((line) => /^[A-Za-z0-9+/]{64}$/.test(line));
}

/** Streams `docker save` and reports which needles occur anywhere in it (layers are plain tars). */
async function savedImageContains(image: string, needles: readonly string[]): Promise<string[]> {
  const stream = (await docker().getImage(image).get()) as NodeJS.ReadableStream;
  const wanted = needles.map((n) => Buffer.from(n));
  const keep = Math.max(...wanted.map((n) => n.length));
  const found = new Set<string>();
  let carry = Buffer.alloc(0);
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    const window = Buffer.concat([carry, chunk]);
    wanted.forEach((needle, i) => {
      if (window.includes(needle)) found.add(needles[i]!);
    });
    carry = window.subarray(Math.max(0, window.length - keep));
  }
  return [...found];
}

describeDocker('airlock image build and airlock doctor (Docker)', () => {
  let dir: string;
  let buildCaFile: string;
  let marker: string;

  beforeAll(async () => {
    try {
      await docker().getImage(BASE).inspect();
    } catch {
      throw new Error(`${BASE} is not in the engine (Docker Hub may be unreachable): run \`sudo .ci/docker-engine.sh\` to import one`);
    }
    dir = tmpDir('airlock-image-test-');
    // The build CA = the host's roots (this network inspects TLS; passed from here, never
    // hard-coded in src) + the marker CA, whose bytes must not reach the image.
    marker = readFileSync(MARKER, 'utf8');
    const host = hostBuildCa();
    buildCaFile = join(dir, 'build-ca.pem');
    writeFileSync(buildCaFile, (host ? readFileSync(host, 'utf8') + '\n' : '') + marker);
  });

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(
    'builds the agent image',
    async () => {
      // The shared test image first (other files wait for it under a lock): this build then
      // reuses its cached layers, and only the npm stage runs again for the new build CA.
      await ensureAgentImage();
      const run = await airlock(['image', 'build', '--tag', TAG, '--build-ca', buildCaFile], 20 * MINUTE);
      expect(run.code, tail(run.out)).toBe(0);
      expect(run.out).toContain(`Successfully tagged ${TAG}`);
      expect(run.out).toMatch(/airlock: built airlock-agent:image-test \(sha256:[0-9a-f]{64}\)/);
    },
    30 * MINUTE,
  );

  it(
    'keeps the build CA out of the image (history and every layer)',
    async () => {
      const history = (await docker().getImage(TAG).history()) as Array<{ CreatedBy: string }>;
      const createdBy = history.map((h) => h.CreatedBy).join('\n');
      expect(createdBy).not.toMatch(/build-ca|BEGIN CERTIFICATE|NODE_EXTRA_CA_CERTS=\/tmp/);
      for (const line of pemLines(marker)) expect(createdBy).not.toContain(line);

      const needles = [...pemLines(marker), 'tmp/build-ctx/', 'build-ca.pem'];
      expect(pemLines(marker).length).toBeGreaterThan(0);
      expect(await savedImageContains(TAG, needles)).toEqual([]);

      const env = ((await docker().getImage(TAG).inspect()).Config?.Env ?? []) as string[];
      expect(env.join('\n')).not.toMatch(/CA_CERTS|CA_BUNDLE|SSL_CERT|build-ca/);
    },
    5 * MINUTE,
  );

  it(
    'doctor passes every check on the built image',
    async () => {
      const run = await airlock(['doctor', '--image', TAG]);
      expect(run.code, run.out).toBe(0);
      const lines = run.out.split('\n').filter((l) => /^(PASS|FAIL) /.test(l));
      expect(lines.map((l) => l.split(/\s+/)[1])).toEqual(['entrypoint', 'default-user', 'bash', 'curl', 'git', 'workspace', 'agent-cli', 'ca-trust']);
      expect(lines.filter((l) => l.startsWith('FAIL'))).toEqual([]);
      expect(run.out).toMatch(/PASS workspace\s+— \/workspace is writable by uid 4242:4242/);
      expect(run.out).toMatch(/PASS agent-cli\s+— claude \S+ \(Claude Code\)/);
      expect(run.out).toMatch(/PASS ca-trust\s+— .*trusted by curl, git, node, python3/);
      expect(run.out).toMatch(/PASS default-user\s+— the image runs as 1000:1000 \(uid 1000:1000\), not root/);
      expect(run.out).toContain('all 8 checks passed');
      // Which network mode `airlock run` would use, and why (here: no airlock-relay:latest).
      expect(run.out).toMatch(/^network: .*--network-mode none/m);
    },
    5 * MINUTE,
  );

  it(
    'doctor fails a bare Debian image, with a fix for each failure',
    async () => {
      const run = await airlock(['doctor', '--image', BASE]);
      expect(run.code, run.out).toBe(1);
      const fails = run.out.split('\n').filter((l) => l.startsWith('FAIL '));
      for (const name of ['default-user', 'git', 'workspace', 'agent-cli', 'ca-trust']) {
        const line = fails.find((l) => l.split(/\s+/)[1] === name);
        expect(line, `${name} should fail:\n${run.out}`).toBeDefined();
        expect(line).toMatch(/; fix: \S/);
      }
      expect(run.out).toContain('fix: install git: apt-get install -y git');
      expect(run.out).toContain('fix: make /workspace writable by any uid: mkdir -p /workspace && chmod 1777 /workspace');
      expect(run.out).toMatch(/checks failed/);
    },
    5 * MINUTE,
  );

  it(
    'doctor fails an image whose entrypoint drops the CA variables',
    async () => {
      const tag = 'airlock-doctor-test:drops-ca-env';
      const dockerfile = [
        `FROM ${TAG}`,
        'ENTRYPOINT ["env", "-u", "SSL_CERT_FILE", "-u", "CURL_CA_BUNDLE", "-u", "GIT_SSL_CAINFO", "-u", "NODE_EXTRA_CA_CERTS", "-u", "REQUESTS_CA_BUNDLE"]',
        '',
      ].join('\n');
      const stream = (await docker().buildImage(tarOf([{ name: 'Dockerfile', content: dockerfile }]) as unknown as NodeJS.ReadableStream, {
        t: tag,
        rm: true,
        forcerm: true,
      })) as NodeJS.ReadableStream;
      const output = await new Promise<string>((resolve, reject) => {
        let text = '';
        stream.on('data', (c: Buffer) => (text += c.toString()));
        stream.on('end', () => resolve(text));
        stream.on('error', reject);
      });
      expect(output).not.toMatch(/"error"/);
      try {
        const run = await airlock(['doctor', '--image', tag]);
        expect(run.code, run.out).toBe(1);
        expect(run.out).toMatch(/FAIL ca-trust\s+— a test CA at \/etc\/airlock\/ca\.pem is not trusted by curl \(curl: \(60\)/);
        expect(run.out).toMatch(/PASS curl/);
      } finally {
        await docker().getImage(tag).remove({ force: true }).catch(() => {});
      }
    },
    5 * MINUTE,
  );
});
