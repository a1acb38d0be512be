// The live view in a real browser (Debian's chromium through playwright-core), fed by a real
// session: curl through the proxy to a TLS upstream on loopback, the audit log, the view's server.
// Screenshots of each screen go to test-output/view/.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { credentialsFactory } from '../../src/credentials/sources.js';
import type { ViewServer } from '../../src/view/server.js';
import { readFileSync, writeFileSync } from 'node:fs';
import { startRuntimeView } from '../../src/view/runtime-view.js';
import type { AuditEntry } from '../../src/audit/entry.js';
import { launchBrowser } from '../helpers/browser.js';
import type { TestBrowser } from '../helpers/browser.js';
import { createTestPki, freePort, rmTmp, runProcess, sleep, startAirlock, startHttpUpstream, startHttpsUpstream, waitFor } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import { secretLeaks } from '../helpers/secret-leaks.js';

const SECRET = 'sk-live-ViewSecret0123456789abcdefQRSTUV';
const PLACEHOLDER = 'sk-airlock-view-placeholder-000000000000';

/** The view's port, known before the proxy starts so the policy and --resolve can name it. */
let viewPort = 0;
const policy = () => `
version: 1
name: view-test
allow:
  - host: api.example.test
  - host: never.example.test
  # A session trying the view: allowed by policy, refused by the destination guard.
  - host: view.example.test
    ports: [${viewPort}]
  - host: 127.0.0.1
    ports: [${viewPort}]
credentials:
  - name: api_token
    env: [API_TOKEN]
    placeholder: ${PLACEHOLDER}
    secret: { env: AIRLOCK_VIEW_SECRET }
    hosts: [api.example.test]
    in: [header]
    headers: [authorization]
`;

describe('the live view in chromium', () => {
  let pki: TestPki;
  let upstream: TestUpstream;
  let airlock: AirlockHandle;
  let view: ViewServer;
  let browser: TestBrowser;

  beforeAll(async () => {
    viewPort = await freePort();
    pki = await createTestPki();
    // The upstream echoes the request (headers included) back: a secret it got would come back.
    upstream = await startHttpsUpstream({ pki, names: ['api.example.test', 'other.example.test'] });
    airlock = await startAirlock({
      policy: policy(),
      // An operator's override pointing a name at the view (a mistake the guard must catch).
      resolve: { 'api.example.test:443': upstream.port, 'other.example.test:443': upstream.port, [`view.example.test:${viewPort}`]: viewPort },
      upstreamCa: [pki.caPem],
      credentials: credentialsFactory({ AIRLOCK_VIEW_SECRET: SECRET }),
      // The session follows its policy file: the view's inbox is the runtime's, approve writes it.
      policyFile: true,
    });
    view = await startRuntimeView(airlock.runtime, { host: '127.0.0.1', port: viewPort });
    browser = await launchBrowser({ hostRules: 'MAP rebind.example.test 127.0.0.1' });
    await openView();
  });

  afterAll(async () => {
    await browser?.close();
    await view?.close();
    await airlock?.close();
    await upstream?.close();
    rmTmp(pki?.dir);
  });

  async function curl(url: string, headers: string[] = []) {
    const args = ['-sS', '--max-time', '10', '-o', '/dev/null', '-w', '%{http_code} %{http_connect}', ...headers.flatMap((h) => ['-H', h]), url];
    // --proxy: curl sends even loopback URLs through it (a session's client may too).
    args.unshift('--proxy', airlock.proxyUrl);
    const env = { PATH: process.env.PATH, CURL_CA_BUNDLE: airlock.bundlePath };
    const r = await runProcess('curl', args, { env });
    // A refused CONNECT leaves no HTTP status, only the proxy's answer to the CONNECT.
    const [status, connect] = r.stdout.split(' ').map(Number);
    return status || connect;
  }

  const rowsText = () => browser.page.locator('#rows tr').allInnerTexts();

  async function openView() {
    await browser.page.goto(view.url);
    // The token is traded for the cookie and dropped from the address bar.
    expect(browser.page.url()).toBe(view.url.replace(/\?token=.*$/, ''));
    await browser.page.locator(`#session-list li[data-session="${airlock.session.id}"]`).waitFor();
  }

  it('a request made through Airlock appears as a row within a second', async () => {
    await expect.poll(() => browser.page.locator('#conn').textContent()).toBe('live');
    expect(await curl('https://api.example.test/first-request', [`Authorization: Bearer ${PLACEHOLDER}`])).toBe(200);
    const done = Date.now();
    await browser.page.locator('#rows tr', { hasText: '/first-request' }).waitFor({ timeout: 1000 });
    const latency = Date.now() - done;
    const row = (await rowsText()).find((t) => t.includes('/first-request'))!;
    expect(row).toMatch(/allow/i);
    expect(row).toContain('api_token'); // the credential's name, not its value
    expect(row).toContain('allow[0] api.example.test');
    console.log(`row shown ${latency} ms after curl returned`);
    await browser.screenshot('timeline');
  });

  it('a denied request shows in the inbox; Allow, then confirm, and the same request succeeds in the running session', async () => {
    const file = airlock.policyFile!;
    const before = readFileSync(file, 'utf8');
    const versionBefore = airlock.session.policy.digest;
    expect(await curl('https://other.example.test/needs/access')).toBe(403); // CONNECT refused
    expect(await curl('https://other.example.test/needs/access')).toBe(403);
    await browser.page.locator('.tabs button[data-tab="inbox"]').click();
    const item = browser.page.locator('#inbox tr.item', { hasText: 'other.example.test' });
    await item.waitFor({ timeout: 3000 });
    await expect.poll(() => item.locator('td.count').textContent()).toBe('2');
    expect(await item.innerText()).toContain('(CONNECT: the whole host)');
    await browser.screenshot('inbox');
    await item.locator('button.allow').click();
    // The narrowest rule, as a diff of the file the session follows.
    await browser.page.locator('#approve-diff', { hasText: '+  - host: other.example.test' }).waitFor();
    expect(await browser.page.locator('#approve-file').innerText()).toBe(`Change to ${file}:`);
    expect(await browser.page.locator('#approve-widens').isHidden()).toBe(true);
    expect(readFileSync(file, 'utf8')).toBe(before); // nothing written before the operator confirms
    expect(await curl('https://other.example.test/needs/access')).toBe(403);
    await browser.screenshot('inbox-allow-diff');
    await browser.page.locator('#approve-confirm').click();
    await browser.page.locator('#inbox-message', { hasText: 'allowed:' }).waitFor();
    // Written, reloaded, in force: the same curl through the same session, no restart.
    expect(readFileSync(file, 'utf8')).toMatch(/^ {2}- host: other\.example\.test$/m);
    expect(airlock.session.policy.digest).not.toBe(versionBefore);
    expect(await curl('https://other.example.test/needs/access')).toBe(200);
    const line = await airlock.waitForAudit((l) => l.kind === 'request' && l.host === 'other.example.test' && l.path === '/needs/access');
    expect(line).toMatchObject({ action: 'allow', status: 200, policy_version: airlock.session.policy.digest });
    expect(upstream.requests.some((r) => r.url === '/needs/access')).toBe(true);
    // The item is settled, and the rules the view lists are the ones in force now.
    await expect.poll(() => browser.page.locator('#inbox tr.item', { hasText: 'other.example.test' }).count()).toBe(0);
    await browser.screenshot('inbox-allowed');
    await browser.page.locator('.tabs button[data-tab="rules"]').click();
    await browser.page.locator('#rule-rows tr', { hasText: 'allow[4] other.example.test' }).waitFor({ timeout: 3000 });
    await browser.page.locator('.tabs button[data-tab="timeline"]').click();
  });

  it('a policy file the session cannot load: the banner says so, and approving is refused with the reason', async () => {
    const file = airlock.policyFile!;
    const good = readFileSync(file, 'utf8');
    const version = airlock.session.policy.digest;
    expect(await curl('https://refused.example.test/later')).toBe(403);
    writeFileSync(file, `${good}typo_key: 1\n`);
    const banner = browser.page.locator('#banner');
    await banner.waitFor({ timeout: 5000 });
    expect(await banner.innerText()).toContain(`Session ${airlock.session.id}: policy reload failed, still enforcing ${version}: ${file}:`);
    expect(await banner.innerText()).toContain('typo_key');
    await browser.screenshot('reload-failed-banner');
    await browser.page.locator('.tabs button[data-tab="inbox"]').click();
    const item = browser.page.locator('#inbox tr.item', { hasText: 'refused.example.test' });
    await item.locator('button.allow').click();
    // The runtime's 409, as it words it: nothing to confirm.
    await browser.page.locator('#approve-error', { hasText: 'fix the file, then approve again' }).waitFor({ timeout: 3000 });
    expect(await browser.page.locator('#approve-confirm').isDisabled()).toBe(true);
    await browser.screenshot('inbox-allow-refused');
    await browser.page.locator('#approve-cancel').click();
    writeFileSync(file, good);
    await banner.waitFor({ state: 'hidden', timeout: 5000 });
    expect(airlock.session.policy.digest).toBe(version);
    await item.locator('button', { hasText: 'Dismiss' }).click();
    await expect.poll(() => item.count()).toBe(0);
    await browser.page.locator('.tabs button[data-tab="timeline"]').click();
  });

  it('shows per-rule hit counts, rules never hit included', async () => {
    await browser.page.locator('.tabs button[data-tab="rules"]').click();
    const never = browser.page.locator('#rule-rows tr.never', { hasText: 'allow[1] never.example.test' });
    await never.waitFor({ timeout: 3000 });
    await expect.poll(async () => Number(await browser.page.locator('#rule-rows tr', { hasText: 'allow[0] api.example.test' }).locator('td.hits').textContent())).toBeGreaterThanOrEqual(1);
    await browser.screenshot('rules');
    await browser.page.locator('.tabs button[data-tab="timeline"]').click();
  });

  it('a host name carrying markup and bidi controls renders as text', async () => {
    // What a session can send: markup in a raw request path (the proxy logs it percent-encoded).
    const send = (head: string) =>
      new Promise<void>((resolve, reject) => {
        const socket = net.connect(airlock.port, '127.0.0.1', () => socket.write(head));
        socket.on('data', () => socket.end());
        socket.on('close', () => resolve());
        socket.on('error', reject);
      });
    const auth = `Proxy-Authorization: ${airlock.proxyAuthorization}`;
    await send(`GET http://api.example.test/<img/src=x/onerror=window.__pwned=1> HTTP/1.1\r\nHost: api.example.test\r\n${auth}\r\nConnection: close\r\n\r\n`);
    // And what the page must survive whatever an audit line holds: a host with markup, a
    // right-to-left override and a zero-width space; markup in the path and the reason.
    const line = (await airlock.auditLines()).at(-1)!;
    const host = 'evil\u202egnp.exe<img src=x onerror="window.__pwned=2">\u200b.test';
    airlock.session.audit.record({ ...line, id: 'hostile', host, path: '/<b>bold</b>', reason: '<script>window.__pwned=3</script>', action: 'deny', status: 403 });
    const page = browser.page;
    await page.locator('#rows tr', { hasText: '%3Cimg/src=x/onerror=window.__pwned=1%3E' }).waitFor({ timeout: 3000 });
    await page.locator('#rows tr', { hasText: 'gnp.exe' }).waitFor({ timeout: 3000 });
    expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
    const text = (await rowsText()).join('\n');
    // The override and the invisible character are shown as escapes, not obeyed.
    expect(text).toContain('http://evil⟨U+202E⟩gnp.exe<img src=x onerror="window.__pwned=2">⟨U+200B⟩.test/<b>bold</b>');
    expect(text).toContain('<script>window.__pwned=3</script>');
    expect(text).not.toMatch(/[\u202e\u200b]/);
    // In the inbox: a refused path carrying markup and an override, and an agent's own request
    // for access whose reason does (the inbox keeps them as plain text, the page shows that as text).
    airlock.session.audit.record({ ...line, id: 'hostile-path', host: 'markup.example.test', path: '/<img src=x onerror="window.__pwned=4">\u202eevil', reason: 'no_rule', action: 'deny', status: 403 });
    airlock.runtime.inbox.requestAccess(airlock.session.id, { host: 'docs.example.test', path: '/v1/search', reason: '<b>please</b> <script>window.__pwned=5</script>\u202e' });
    await page.locator('.tabs button[data-tab="inbox"]').click();
    await page.locator('#inbox tr.item', { hasText: 'markup.example.test' }).waitFor({ timeout: 3000 });
    const inboxText = await page.locator('#inbox').innerText();
    expect(inboxText).toContain('/<img src=x onerror="window.__pwned=4"> evil');
    expect(inboxText).toContain('access_request — agent: <b>please</b> <script>window.__pwned=5</script>');
    expect(inboxText).not.toMatch(/[\u202e\u200b]/);
    expect(await page.locator('#rows img, #rows b, #rows script, #inbox img, #inbox b, #inbox script').count()).toBe(0);
    expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
    await page.locator('.tabs button[data-tab="timeline"]').click();
    await page.locator('#rows tr', { hasText: 'gnp.exe' }).click();
    await browser.screenshot('markup-and-detail');
    await page.locator('#detail-close').click();
  });

  it('filters by decision and text, pauses and resumes, and shows the policy version a line names', async () => {
    const page = browser.page;
    await page.locator('#f-action').selectOption('deny');
    for (const text of await page.locator('#rows tr:visible').allInnerTexts()) expect(text).toMatch(/\tDENY\t/);
    await page.locator('#f-action').selectOption('');
    await page.locator('#f-text').fill('first-request');
    await expect.poll(async () => (await page.locator('#rows tr:visible').allInnerTexts()).map((t) => t.includes('/first-request'))).toEqual([true]);
    await page.locator('#f-text').fill('');
    await page.locator('#pause').click();
    expect(await curl('https://api.example.test/while-paused')).toBe(200);
    // A line decided under a reloaded policy carries its version (hot reload writes policy_version).
    const template = (await airlock.auditLines()).find((l) => l.kind === 'request')!;
    airlock.session.audit.record({ ...template, id: 'versioned', path: '/versioned', policy_version: 'sha256:0123abcd' } as AuditEntry);
    await expect.poll(() => page.locator('#pause').textContent()).toMatch(/^Resume \([1-9]\d* new\)$/);
    expect(await page.locator('#rows tr', { hasText: '/while-paused' }).count()).toBe(0);
    await browser.screenshot('timeline-paused');
    await page.locator('#pause').click();
    await page.locator('#rows tr', { hasText: '/while-paused' }).waitFor({ timeout: 2000 });
    expect(await page.locator('#rows tr', { hasText: '/versioned' }).innerText()).toContain('sha256:0123abcd');
  });

  it('copy-as-curl leaves credentials out and quotes the URL for the shell', async () => {
    await browser.page.locator('#rows tr', { hasText: '/first-request' }).click();
    const curlText = await browser.page.locator('#curl').textContent();
    expect(curlText).toContain("curl 'https://api.example.test/first-request'");
    expect(curlText).toContain('credentials left out');
    expect(curlText).not.toContain(PLACEHOLDER);
    expect(secretLeaks(curlText ?? '', SECRET)).toEqual([]);
    await browser.page.locator('#detail-close').click();
  });

  it('exports the session as JSONL', async () => {
    const href = await browser.page.locator('#export').getAttribute('href');
    const res = await browser.page.request.get(new URL(href!, view.url).toString());
    expect(res.status()).toBe(200);
    expect(res.headers()['content-disposition']).toContain('attachment');
    const text = await res.text();
    const lines = text.trim().split('\n').map((l) => JSON.parse(l) as AuditEntry);
    expect(lines.some((l) => l.path === '/first-request')).toBe(true);
    expect(secretLeaks(text, SECRET)).toEqual([]);
  });

  it('a seeded secret never reaches the page: not the DOM, not any response it loaded', async () => {
    // The secret went upstream (swapped in) and was echoed back (and scrubbed) on the way.
    expect(upstream.requests.some((r) => JSON.stringify(r.headers).includes(SECRET))).toBe(true);
    expect(await curl('https://other.example.test/misuse', [`Authorization: Bearer ${PLACEHOLDER}`])).toBe(403);
    expect(await curl('https://api.example.test/again', [`Authorization: Bearer ${PLACEHOLDER}`])).toBe(200);
    await browser.page.locator('#rows tr', { hasText: '/again' }).waitFor({ timeout: 3000 });
    await browser.page.reload();
    await browser.page.locator('#rows tr', { hasText: '/again' }).waitFor({ timeout: 3000 });
    const bodies = await browser.allBodies();
    expect(bodies.length).toBeGreaterThan(5);
    expect(browser.sseMessages.length).toBeGreaterThan(3);
    const dom = await browser.page.content();
    const storage = await browser.page.evaluate(() => JSON.stringify({ ...sessionStorage }));
    for (const text of [dom, storage, ...bodies]) {
      expect(secretLeaks(text, SECRET)).toEqual([]);
      // Nor the session's proxy password.
      expect(text).not.toContain(airlock.session.token);
    }
  });

  it('refuses a cross-origin write, even from another port of 127.0.0.1 (same site: the cookie goes along)', async () => {
    const items = async () => (await (await browser.page.request.get(new URL('/api/inbox', view.url).toString())).json()) as { id: string; path: string }[];
    expect(await curl('http://denied.example.test/cross-origin')).toBe(403);
    const target = await waitFor(async () => (await items()).find((i) => i.path === '/cross-origin'));
    const viewOrigin = new URL(view.url).origin;
    // A page on another local port posts to the view, as a hostile local page (or one a session
    // served and the operator opened) could: a form (the cookie goes along, same site) and a fetch.
    const dismissUrl = `${viewOrigin}/api/inbox/${target.id}/dismiss`;
    const evil = await startHttpUpstream({
      handler: (req, res) => {
        res.writeHead(200, { 'Content-Type': 'text/html' });
        if (req.url === '/form') {
          res.end(`<!doctype html><form method="POST" action="${dismissUrl}"><input name="x" value="1"></form><script>document.forms[0].submit()</script>`);
        } else {
          res.end(`<!doctype html><script>fetch(${JSON.stringify(dismissUrl)}, { method: 'POST', mode: 'no-cors', credentials: 'include', body: 'x' })</script>`);
        }
      },
    });
    const attacker = await browser.context.newPage();
    try {
      const answer = attacker.waitForResponse((r) => r.url() === dismissUrl);
      await attacker.goto(`http://127.0.0.1:${evil.port}/form`);
      const res = await answer;
      expect(res.status()).toBe(403);
      // The browser says where the form came from; either answer is the view refusing it.
      expect(await res.text()).toMatch(new RegExp(`^refused: (Sec-Fetch-Site is "same-site"|Origin "http://127\\.0\\.0\\.1:${evil.port}" is not this view)`));
      const sent = attacker.waitForRequest((r) => r.url() === dismissUrl);
      await attacker.goto(`http://127.0.0.1:${evil.port}/fetch`);
      await sent;
      await sleep(300);
      expect((await items()).map((i) => i.id)).toContain(target.id);
      // The view's own page can (same request, its own origin).
      const own = await browser.page.evaluate(async (url) => (await fetch(url, { method: 'POST', body: '{}' })).status, `/api/inbox/${target.id}/dismiss`);
      expect(own).toBe(200);
      expect((await items()).map((i) => i.id)).not.toContain(target.id);
    } finally {
      await attacker.close();
      await evil.close();
    }
  });

  it('answers a page on a rebinding name (a name that resolves to 127.0.0.1) with nothing but 421', async () => {
    const page = await browser.context.newPage();
    try {
      const tokenUrl = view.url.replace('127.0.0.1', 'rebind.example.test');
      const res = await page.goto(tokenUrl);
      expect(res?.status()).toBe(421);
      const api = await page.goto(`http://rebind.example.test:${viewPort}/api/sessions`);
      expect(api?.status()).toBe(421);
      expect(await page.content()).not.toContain(airlock.session.id);
    } finally {
      await page.close();
    }
  });

  it('a session cannot reach the view through the proxy, by address or by a name mapped to it', async () => {
    for (const url of [`http://127.0.0.1:${viewPort}/api/sessions`, `http://view.example.test:${viewPort}/api/sessions`]) {
      expect(await curl(url)).toBe(403);
      const line = await airlock.waitForAudit((l) => l.port === viewPort && l.path === '/api/sessions' && l.host === new URL(url).hostname);
      // A rule of the policy allowed it; the destination guard refused it.
      expect(line.rule).toMatch(/^allow\[\d\] /);
      expect(line.reason).toBe('destination_blocked');
      expect(line.status).toBe(403);
      expect(line.detail).toMatch(/own (address|service)/);
    }
  });

  it('a page reload resumes from Last-Event-ID without losing or duplicating events', async () => {
    const page = browser.page;
    const streams: string[] = [];
    const onRequest = (r: { url(): string }) => void (r.url().includes('/events') && streams.push(r.url()));
    page.on('request', onRequest);
    try {
      for (const i of [0, 1, 2]) expect(await curl(`https://api.example.test/before-reload/${i}`)).toBe(200);
      await page.locator('#rows tr', { hasText: '/before-reload/2' }).waitFor({ timeout: 3000 });
      // Requests while the page is away, and after it is back.
      await Promise.all([page.reload(), curl('https://api.example.test/during-reload/0'), curl('https://api.example.test/during-reload/1')]);
      expect(await curl('https://api.example.test/after-reload')).toBe(200);
      await page.locator('#rows tr', { hasText: '/after-reload' }).waitFor({ timeout: 3000 });
      const texts = await rowsText();
      for (const path of ['/before-reload/0', '/before-reload/1', '/before-reload/2', '/during-reload/0', '/during-reload/1', '/after-reload']) {
        expect(texts.filter((t) => t.includes(`api.example.test${path}\t`)), path).toHaveLength(1);
      }
      expect(new Set(texts).size).toBe(texts.length);
      // The page came back with the id of the last event it had.
      expect(streams.at(-1)).toMatch(/[?&]lastEventId=\d+$/);
    } finally {
      page.off('request', onRequest);
    }
  });

  it('a 10,000-event burst keeps the DOM rows and the JS heap bounded', async () => {
    const page = browser.page;
    const cdp = await browser.context.newCDPSession(page);
    await cdp.send('Performance.enable');
    const measure = async () => {
      await cdp.send('HeapProfiler.collectGarbage');
      const { metrics } = (await cdp.send('Performance.getMetrics')) as { metrics: { name: string; value: number }[] };
      const get = (name: string) => metrics.find((m) => m.name === name)!.value;
      return { heap: get('JSHeapUsedSize'), nodes: get('Nodes'), rows: await page.locator('#rows tr').count() };
    };
    const template = { ...(await airlock.auditLines()).find((l) => l.kind === 'request')! };
    const burst = async (tag: string) => {
      for (let i = 0; i < 10_000; i++) airlock.session.audit.record({ ...template, id: `${tag}-${i}`, path: `/${tag}/${i}?q=redacted` });
      await page.locator('#rows tr', { hasText: `/${tag}/9999` }).waitFor({ timeout: 30_000, state: 'attached' });
    };
    const before = await measure();
    await burst('burst-a');
    const afterOne = await measure();
    await burst('burst-b');
    const afterTwo = await measure();
    console.log('burst: before', before, 'after 10k', afterOne, 'after 20k', afterTwo);
    expect(afterOne.rows).toBeLessThanOrEqual(500);
    expect(afterTwo.rows).toBeLessThanOrEqual(500);
    // The second 10,000 events add nothing lasting: the page holds the last 500, whatever came.
    expect(afterTwo.nodes - afterOne.nodes).toBeLessThan(500);
    expect(afterTwo.heap - afterOne.heap).toBeLessThan(2 << 20);
    expect(afterOne.heap).toBeLessThan(40 << 20);
    await browser.screenshot('timeline-after-burst');
  });
});
