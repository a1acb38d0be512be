// The page's states a live proxy does not produce on demand, in chromium: a policy reload that
// failed (the banner), a runner that cannot tell a session's rules (`airlock ui` attached to a
// daemon), an approval that widens a credential's reach, and an approval the inbox refuses.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startView } from '../../src/view/server.js';
import type { ViewServer } from '../../src/view/server.js';
import { InboxError } from '../../src/view/source.js';
import type { InboxItem, InboxSource, ViewSession } from '../../src/view/source.js';
import { launchBrowser } from '../helpers/browser.js';
import type { TestBrowser } from '../helpers/browser.js';
import { rmTmp, tmpDir } from '../helpers/servers.js';

const ITEM: InboxItem = {
  id: 'item-1',
  session: 's-page-test',
  host: 'uploads.example.test',
  port: 443,
  scheme: 'https',
  path: '/v1/files',
  methods: ['POST'],
  count: 3,
  firstSeen: '2026-01-01T00:00:01.000Z',
  lastSeen: '2026-01-01T00:00:09.000Z',
  reason: 'no_rule',
  agentReason: 'to upload the build log <b>now</b>',
};

describe('the view page, states from a runner', () => {
  let dir: string;
  let view: ViewServer;
  let browser: TestBrowser;
  const approved: string[] = [];

  beforeAll(async () => {
    dir = tmpDir();
    mkdirSync(join(dir, 's'));
    const audit = join(dir, 's', 'audit.jsonl');
    const line = { time: '2026-01-01T00:00:01.000Z', session: 's-page-test', id: 'a1', kind: 'request', method: 'GET', scheme: 'https', host: 'api.example.test', port: 443, path: '/ok', status: 200, action: 'allow', rule: 'allow[0] api.example.test', reason: 'allowed', credentials: [], bytes_up: 0, bytes_down: 10, duration_ms: 3, policy_version: 'sha256:1111' };
    writeFileSync(audit, JSON.stringify(line) + '\n');
    const session: ViewSession = {
      id: 's-page-test',
      policy: 'page-test',
      created: '2026-01-01T00:00:00.000Z',
      auditFile: audit,
      rules: null,
      policyStatus: { version: 'sha256:1111', loadedAt: '2026-01-01T00:00:00.000Z', error: 'page-test.yaml:4: allow[1].ports: "x" is not a port' },
    };
    const inbox: InboxSource = {
      list: async () => (approved.length ? [] : [ITEM, { ...ITEM, id: 'item-2', path: '/v1/admin', methods: ['DELETE'], count: 1, agentReason: undefined }]),
      async approvePreview(id) {
        if (id === 'item-2') throw new InboxError('DELETE /v1/admin: a rule for it would also allow /v1/admin/*; edit the policy by hand');
        return {
          file: '/etc/airlock/page-test.yaml',
          diff: '--- page-test.yaml\n+++ page-test.yaml\n@@ -3,3 +3,6 @@\n allow:\n   - host: api.example.test\n+  - host: uploads.example.test\n+    methods: [POST]\n+    paths: [/v1/files]\n',
          widensCredential: 'uploads_token now also reaches uploads.example.test',
        };
      },
      async approve(id) {
        approved.push(id);
        return { version: 'sha256:2222', message: 'page-test.yaml written; policy sha256:2222 in force' };
      },
      dismiss: async () => {},
    };
    view = await startView({ host: '127.0.0.1', port: 0, sessions: { list: async () => [session] }, inbox });
    browser = await launchBrowser();
    await browser.page.goto(view.url);
  });

  afterAll(async () => {
    await browser?.close();
    await view?.close();
    rmTmp(dir);
  });

  it('says a policy reload failed, and which version stays in force', async () => {
    const banner = browser.page.locator('#banner');
    await banner.waitFor();
    expect(await banner.innerText()).toBe('Session s-page-test: policy reload failed, still enforcing sha256:1111: page-test.yaml:4: allow[1].ports: "x" is not a port');
    await browser.page.locator('#rows tr', { hasText: '/ok' }).waitFor();
    expect(await browser.page.locator('#rows tr', { hasText: '/ok' }).innerText()).toContain('sha256:1111');
    await browser.screenshot('banner');
  });

  it('without the rules, lists the rules that matched and says why', async () => {
    await browser.page.locator('.tabs button[data-tab="rules"]').click();
    expect(await browser.page.locator('#rules-note').innerText()).toMatch(/not known to the view/);
    expect(await browser.page.locator('#rule-rows').innerText()).toContain('allow[0] api.example.test\t1');
  });

  it('shows an approval that widens a credential, writes only on confirm, and shows a refusal as text', async () => {
    const page = browser.page;
    await page.locator('.tabs button[data-tab="inbox"]').click();
    const item = page.locator('#inbox tr.item[data-item="item-1"]');
    await item.waitFor();
    // The agent's own words, as text.
    expect(await item.innerText()).toContain('agent: to upload the build log <b>now</b>');
    expect(await page.locator('#inbox b').count()).toBe(0);
    await page.locator('#inbox tr.item[data-item="item-2"] button.allow').click();
    await page.locator('#approve-error', { hasText: 'would also allow /v1/admin/*' }).waitFor();
    expect(await page.locator('#approve-confirm').isDisabled()).toBe(true);
    await item.locator('button.allow').click();
    await page.locator('#approve-widens', { hasText: 'uploads_token now also reaches uploads.example.test' }).waitFor();
    expect(await page.locator('#approve-diff').innerText()).toContain('+    paths: [/v1/files]');
    expect(approved).toEqual([]);
    await browser.screenshot('inbox-widens-credential');
    await page.locator('#approve-confirm').click();
    await page.locator('#inbox-message', { hasText: 'policy sha256:2222 in force' }).waitFor();
    expect(approved).toEqual(['item-1']);
    await page.locator('#inbox-empty').waitFor();
  });
});
