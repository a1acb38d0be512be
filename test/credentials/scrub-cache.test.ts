// Scrubbing keeps what a host's responses need between responses (the needles and their text):
// a secret rotated in after that must still be scrubbed, and many hosts under a wildcard too.
import { describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/policy/index.js';
import { SessionBroker } from '../../src/credentials/session-broker.js';
import type { SecretHandle } from '../../src/credentials/session-broker.js';
import { KnownValues } from '../../src/credentials/known-values.js';

const PLACEHOLDER = 'ghp_airlockPlaceholder0000000000000000';
const policy = parsePolicy(
  `version: 1
name: cache
allow:
  - host: "*.example.com"
credentials:
  - name: github
    env: [GH_TOKEN]
    placeholder: ${PLACEHOLDER}
    secret: { env: AIRLOCK_GITHUB_TOKEN }
    hosts: ["*.example.com"]
`,
  'p.yaml',
);

/** A source whose value the test rotates, remembering the old ones as the real sources do. */
function rotating(first: string) {
  const values = [first];
  const handle: SecretHandle = { current: async () => values[values.length - 1]!, known: () => values };
  return { handle, rotate: (next: string) => values.push(next) };
}

function echoed(broker: SessionBroker, host: string, value: string) {
  let scrubbed = 0;
  const out = broker.scrubResponse({ host, status: 200, headers: { 'x-echo': `token ${value}`, 'content-type': 'text/plain' }, hasBody: true, onScrub: () => scrubbed++ });
  const body = out?.scrubWhole?.(Buffer.from(`{"echo":"${value}"}`)).toString('latin1');
  return { header: out?.headers['x-echo'], body, scrubbed };
}

describe('response scrubbing with its per-host needles kept', () => {
  it('a secret rotated in after a response from the same host is still scrubbed, and so is the old one', () => {
    const source = rotating('ghs_FirstRealSecret000000000000000000');
    const broker = new SessionBroker(policy.credentials, new Map([['github', source.handle]]));
    const before = echoed(broker, 'api.example.com', 'ghs_FirstRealSecret000000000000000000');
    expect(before.header).toBe(`token ${PLACEHOLDER}`);
    expect(before.body).toBe(`{"echo":"${PLACEHOLDER}"}`);
    source.rotate('ghs_SecondRealSecret11111111111111111');
    for (const value of ['ghs_SecondRealSecret11111111111111111', 'ghs_FirstRealSecret000000000000000000']) {
      const after = echoed(broker, 'api.example.com', value);
      expect(after.header).toBe(`token ${PLACEHOLDER}`);
      expect(after.body).toBe(`{"echo":"${PLACEHOLDER}"}`);
      expect(after.scrubbed).toBeGreaterThan(0);
    }
  });

  it('a secret rotated thousands of times over a long session: needles of forgotten values are let go', () => {
    // The source remembers its newest 8 values, as the real ones do (KnownValues).
    const known = new KnownValues();
    const handle: SecretHandle = { current: async () => known.list().at(-1)!, known: () => known.list() };
    known.add('ghs_RotatingRealSecret000000000000000');
    const broker = new SessionBroker(policy.credentials, new Map([['github', handle]]));
    const formsKept = () => (broker as unknown as { forms: Map<string, unknown> }).forms.size;
    for (let i = 1; i <= 2000; i++) {
      const value = `ghs_RotatingRealSecret${String(i).padStart(15, '0')}`;
      known.add(value);
      expect(echoed(broker, 'api.example.com', value).body).toBe(`{"echo":"${PLACEHOLDER}"}`);
    }
    expect(formsKept()).toBeLessThanOrEqual(8);
    // The values still remembered are still scrubbed.
    expect(echoed(broker, 'api.example.com', `ghs_RotatingRealSecret${String(1993).padStart(15, '0')}`).body).toBe(`{"echo":"${PLACEHOLDER}"}`);
  });

  it('hundreds of hosts under a wildcard: each response is scrubbed, the first host again too', () => {
    const secret = 'ghs_WildcardRealSecret22222222222222';
    const broker = new SessionBroker(policy.credentials, new Map([['github', rotating(secret).handle]]));
    for (let i = 0; i < 600; i++) {
      const host = `h${i % 300}.example.com`;
      const r = echoed(broker, host, secret);
      expect(r.header, host).toBe(`token ${PLACEHOLDER}`);
      expect(r.body, host).not.toContain(secret);
    }
    // A host the credential is not bound to: nothing to scrub there.
    expect(broker.scrubResponse({ host: 'other.test', status: 200, headers: {}, hasBody: true, onScrub: () => {} })).toBeNull();
  });
});
