// A real headless browser for page tests: Debian's chromium driven by playwright-core, with a fresh
// profile per launch. Records every response the page gets (bodies of finished responses, and each
// server-sent event through the DevTools protocol, as an EventSource response never finishes).
//
//   launchBrowser({ hostRules? }) → Promise<TestBrowser>
//       { context, page, responses (url, status, contentType, body), sseMessages (data strings),
//         allBodies() → every body and event seen, screenshot(name) → path, close() }
//   SCREENSHOT_DIR: test-output/view (gitignored)
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import type { BrowserContext, Page } from 'playwright-core';
import { REPO_ROOT, rmTmp, tmpDir } from './servers.js';

export const CHROMIUM = '/usr/bin/chromium';
export const SCREENSHOT_DIR = join(REPO_ROOT, 'test-output', 'view');

export interface RecordedResponse {
  readonly url: string;
  readonly status: number;
  readonly contentType: string;
  readonly body: string;
}

export interface TestBrowser {
  readonly context: BrowserContext;
  readonly page: Page;
  readonly responses: RecordedResponse[];
  readonly sseMessages: string[];
  /** Waits for the bodies still being read, then returns every body and event text seen. */
  allBodies(): Promise<string[]>;
  screenshot(name: string): Promise<string>;
  close(): Promise<void>;
}

export async function launchBrowser(opts: { hostRules?: string } = {}): Promise<TestBrowser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`);
  const profile = tmpDir('airlock-chromium-');
  const args = [
    '--no-sandbox',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
    '--disable-quic',
    '--enable-precise-memory-info',
    // Keep timers of a page in the background running as in a focused tab.
    '--disable-background-timer-throttling',
    '--disable-renderer-backgrounding',
  ];
  if (opts.hostRules) args.push(`--host-resolver-rules=${opts.hostRules}`);
  const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args, viewport: { width: 1400, height: 860 } });
  const page = context.pages()[0] ?? (await context.newPage());
  const responses: RecordedResponse[] = [];
  const sseMessages: string[] = [];
  const reading: Promise<void>[] = [];
  page.on('response', (response) => {
    const contentType = response.headers()['content-type'] ?? '';
    if (contentType.startsWith('text/event-stream')) return; // never finishes: read through CDP below
    reading.push(
      response
        .body()
        .then((body) => void responses.push({ url: response.url(), status: response.status(), contentType, body: body.toString('latin1') }))
        .catch(() => void responses.push({ url: response.url(), status: response.status(), contentType, body: '' })),
    );
  });
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  cdp.on('Network.eventSourceMessageReceived', (e: { data: string }) => void sseMessages.push(e.data));
  return {
    context,
    page,
    responses,
    sseMessages,
    async allBodies() {
      await Promise.all(reading);
      return [...responses.map((r) => r.body), ...sseMessages];
    },
    async screenshot(name) {
      mkdirSync(SCREENSHOT_DIR, { recursive: true });
      const path = join(SCREENSHOT_DIR, `${name}.png`);
      await page.screenshot({ path, fullPage: false });
      return path;
    },
    async close() {
      await context.close();
      rmTmp(profile);
    },
  };
}
