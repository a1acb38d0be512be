// `airlock doctor --for cloche|clauderon|agentgate` against small images built here to each guide
// (a stand-in `claude` that answers --version; Cloche's cloche-agent and clo as stubs), and against
// images that break them: each failure named, each with its fix.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { buildTestImage, describeDocker, removeTestImages } from '../helpers/docker.js';
import { runCli } from '../helpers/servers.js';

const RUN_ID = randomBytes(3).toString('hex');
const LABEL = `airlock-test=doctor-profiles-${RUN_ID}`;
const SLOW = 20 * 60_000;

/** What every guide's image has: bash, curl, git, the CA store, openssl (the doctor's test server), an agent CLI. */
const BASE = [
  'FROM debian:bookworm-slim',
  'RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends bash ca-certificates curl git openssl >/dev/null && rm -rf /var/lib/apt/lists/*',
  `RUN printf '#!/bin/sh\\necho "1.0.0 (Claude Code)"\\n' > /usr/local/bin/claude && chmod 755 /usr/local/bin/claude`,
];

const IMAGES = {
  cloche: [
    ...BASE,
    'RUN useradd --create-home agent && mkdir -m 1777 /workspace',
    `RUN for t in cloche-agent clo; do printf '#!/bin/sh\\nexit 0\\n' > /usr/local/bin/$t && chmod 755 /usr/local/bin/$t; done`,
    'USER agent',
  ],
  clauderon: [...BASE, 'RUN mkdir -m 1777 /workspace', 'WORKDIR /workspace', 'CMD ["/bin/bash"]'],
  agentgate: [...BASE, 'RUN useradd --uid 1000 --create-home agentgate && mkdir -m 1777 /workspace', 'HEALTHCHECK CMD claude --version || exit 1', 'USER agentgate'],
  // Starts by writing under /etc, as root: no user, no healthcheck, no read-only root, needs capabilities.
  'agentgate-broken': ['FROM debian:bookworm-slim', 'ENTRYPOINT ["sh", "-c", "date > /etc/agent-started && exec \\"$@\\"", "entry"]'],
} as const;

function tag(name: string): string {
  return `airlock-test-doctor-${name}:${RUN_ID}`;
}

async function doctor(image: string, guide: string) {
  const r = await runCli(['doctor', '--image', image, '--for', guide], { timeoutMs: 300_000 });
  const lines = r.stdout.split('\n').filter((l) => /^(PASS|FAIL) /.test(l));
  const byName = Object.fromEntries(lines.map((l) => [l.split(/\s+/)[1]!, l]));
  return { ...r, lines, byName };
}

describe('airlock doctor --for with an unknown guide', () => {
  it('lists the known ones', async () => {
    const r = await runCli(['doctor', '--image', 'x', '--for', 'clochee', '--engine', '/nonexistent/docker.sock'], { timeoutMs: 30_000 });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('--for clochee: "clochee" is not a known guide; known: cloche, clauderon, agentgate');
  });
});

describeDocker('airlock doctor --for: images built to each guide, and images that break it', () => {
  beforeAll(async () => {
    for (const [name, lines] of Object.entries(IMAGES)) await buildTestImage(tag(name), lines.join('\n') + '\n', LABEL);
  }, SLOW);

  afterAll(async () => {
    await removeTestImages(LABEL);
  }, 120_000);

  it('cloche: an image to its guide passes every check; bare Debian fails the agent user and its tools, with fixes', async () => {
    const good = await doctor(tag('cloche'), 'cloche');
    expect(good.code, good.stdout + good.stderr).toBe(0);
    expect(good.byName.user).toMatch(/^PASS user\s+— the image runs as agent \(uid \d+\)$/);
    expect(good.byName.tools).toMatch(/^PASS tools\s+— cloche-agent clo on PATH$/);
    const bad = await doctor('debian:bookworm-slim', 'cloche');
    expect(bad.code).toBe(1);
    expect(bad.byName.user).toMatch(/^FAIL user\s+— the image has no user agent in \/etc\/passwd; fix: build FROM cloche-base:latest/);
    expect(bad.byName.tools).toMatch(/^FAIL tools\s+— not on PATH: cloche-agent clo; fix: build FROM cloche-base:latest/);
    expect(bad.byName.git).toMatch(/^FAIL git .*; fix: install git/);
  }, 600_000);

  it('clauderon: an image to its guide (no USER) passes; bare Debian fails curl, git, /workspace and the agent CLI', async () => {
    const good = await doctor(tag('clauderon'), 'clauderon');
    expect(good.code, good.stdout + good.stderr).toBe(0);
    expect(good.byName['default-user']).toMatch(/^PASS default-user — no USER, as clauderon's guide says/);
    expect(good.byName.tools).toMatch(/^PASS tools\s+— mkdir chmod cat date on PATH$/);
    const bad = await doctor('debian:bookworm-slim', 'clauderon');
    expect(bad.code).toBe(1);
    for (const name of ['curl', 'git', 'workspace', 'agent-cli']) expect(bad.byName[name], name).toMatch(/^FAIL .*; fix: \S/);
  }, 600_000);

  it('agentgate: an image to its plan passes; one that starts by writing /etc as root fails user, healthcheck, read-only root and capabilities', async () => {
    const good = await doctor(tag('agentgate'), 'agentgate');
    expect(good.code, good.stdout + good.stderr).toBe(0);
    expect(good.lines.map((l) => l.split(/\s+/)[1])).toEqual(
      expect.arrayContaining(['user', 'healthcheck', 'read-only-root', 'capabilities']),
    );
    expect(good.byName.user).toMatch(/^PASS user\s+— the image runs as agentgate \(uid 1000\)$/);
    expect(good.byName.healthcheck).toMatch(/^PASS healthcheck — HEALTHCHECK .*claude --version/);
    expect(good.byName['read-only-root']).toMatch(/^PASS read-only-root — /);
    const bad = await doctor(tag('agentgate-broken'), 'agentgate');
    expect(bad.code).toBe(1);
    expect(bad.byName.user).toMatch(/^FAIL user\s+— the image has no user agentgate in \/etc\/passwd; fix: `RUN useradd --uid 1000/);
    expect(bad.byName.healthcheck).toMatch(/^FAIL healthcheck — the image has no HEALTHCHECK; fix: /);
    expect(bad.byName['read-only-root']).toMatch(/^FAIL read-only-root — with a read-only root file system the entrypoint exited with \d+: .*Read-only file system; fix: write only under \/workspace and \/tmp/);
    expect(bad.byName.capabilities).toMatch(/^FAIL capabilities — .*; fix: /);
  }, 600_000);
});
