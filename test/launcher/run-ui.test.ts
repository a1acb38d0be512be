// `airlock run --ui` against the real Docker engine: the view of the embedded proxy lists the
// running session and streams the container's requests; the container reaches the view neither
// through the proxy (refused by the destination guard, though the policy allows the address) nor
// directly (its network has no route to the host). The upstream is this test's server on the host.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describeDocker } from '../helpers/docker.js';
import { freePort, rmTmp, startHttpsUpstream, tmpDir, waitFor } from '../helpers/servers.js';
import type { TestPki, TestUpstream } from '../helpers/servers.js';
import { viewGet, viewUrlIn } from '../helpers/view.js';
import { parseAuditLines } from '../../src/audit/report.js';
import { execScript, expectNoLeftovers, finishSession, NO_LEFTOVERS, relayRunSetup, sessionCommand, sessionSummary, spawnCli, waitExit, waitForSession } from './run-helpers.js';

const SLOW = 30 * 60_000;

let image: string;
let relayImage: string;
let pki: TestPki;
let github: TestUpstream;
let work: string;
let baseEnv: NodeJS.ProcessEnv;

beforeAll(async () => {
  ({ image, relayImage, baseEnv, pki } = await relayRunSetup());
  github = await startHttpsUpstream({ pki, names: ['api.github.com'] });
  work = tmpDir('airlock-run-ui-');
}, SLOW);

afterAll(async () => {
  await github?.close();
  rmTmp(work, pki?.dir);
}, 120_000);

describeDocker('airlock run --ui', () => {
  it('serves the view of the run; the container reaches it neither through the proxy nor directly', async () => {
    const viewPort = await freePort();
    const policy = join(work, 'policy.yaml');
    // The policy allows the view's address: only the destination guard stands in the way.
    writeFileSync(policy, `version: 1\nname: run-ui\nallow:\n  - host: api.github.com\n  - host: 127.0.0.1\n    ports: [${viewPort}]\n`, { mode: 0o644 });
    const stateDir = join(work, 'state');
    const name = `airlock-test-ui-${randomBytes(3).toString('hex')}`;
    const cli = spawnCli(
      [
        'run', '--policy', policy, '--image', image, '--relay-image', relayImage, '--state-dir', stateDir, '--name', name,
        '--resolve', `api.github.com:443:127.0.0.1:${github.port}`, '--upstream-ca', pki.caFile,
        '--ui', `127.0.0.1:${viewPort}`, '--', ...sessionCommand('/tmp/ready'),
      ],
      baseEnv,
    );
    try {
      const c = await waitForSession(cli, name, undefined, 180_000);
      await waitFor(async () => (await execScript(c.name, 'test -e /tmp/ready && echo up')).stdout.includes('up'), 60_000, 'session ready');
      const url = viewUrlIn(cli.stderr());
      expect(url, cli.stderr()).toMatch(new RegExp(`^http://127\\.0\\.0\\.1:${viewPort}/\\?token=`));
      const probe = await execScript(
        c.name,
        [
          `curl -sS -o /dev/null -w 'UPSTREAM %{http_code}\\n' https://api.github.com/from-container`,
          // Through the proxy, even for a loopback URL (--noproxy '' overrides NO_PROXY).
          `curl -sS --noproxy '' -x "$HTTPS_PROXY" -o /dev/null -w 'VIA_PROXY %{http_code}\\n' http://127.0.0.1:${viewPort}/api/sessions`,
          `curl -sS --noproxy '*' --connect-timeout 3 --max-time 5 -o /dev/null -w 'DIRECT %{http_code}\\n' http://127.0.0.1:${viewPort}/api/sessions; echo "DIRECT_RC $?"`,
        ].join('\n'),
      );
      expect(probe.stdout).toContain('UPSTREAM 200');
      expect(probe.stdout).toContain('VIA_PROXY 403');
      expect(probe.stdout).toContain('DIRECT 000');
      const sessions = JSON.parse((await viewGet(url!, '/api/sessions')).body) as { id: string; live: boolean }[];
      expect(sessions.map((s) => [s.id, s.live])).toEqual([[c.sessionId, true]]);
      const stream = await viewGet(url!, `/api/sessions/${c.sessionId}/events`, /"path":"\/api\/sessions"/);
      expect(stream.body).toContain('"path":"/from-container"');
      await finishSession(c.name, 0);
      const r = await waitExit(cli, 60_000);
      expect(r.code, r.stderr).toBe(0);
      const audit = parseAuditLines(readFileSync(sessionSummary(r.stderr)!.audit, 'utf8'));
      const refused = audit.find((l) => l.port === viewPort);
      expect(refused).toMatchObject({ host: '127.0.0.1', status: 403, reason: 'destination_blocked', rule: 'allow[1] 127.0.0.1' });
      // The view ends with the run.
      await expect(viewGet(url!, '/api/sessions')).rejects.toThrow(/ECONNREFUSED/);
      expect(await expectNoLeftovers(c.sessionId)).toEqual(NO_LEFTOVERS);
    } finally {
      // SIGTERM makes the launcher remove what it made. (No `airlock gc` here: it would also take
      // what other tests running now leave behind on purpose for their own gc.)
      if (!cli.exited()) {
        cli.child.kill('SIGTERM');
        await waitExit(cli, 60_000).catch(() => {});
      }
    }
  }, SLOW);
});
