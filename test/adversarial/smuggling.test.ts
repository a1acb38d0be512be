// Attack 6 (request smuggling) and attack 7 (header floods), over the plain proxy and inside an
// inspected tunnel. Each smuggling payload carries a complete second request ("/smuggled-...")
// where a lenient or disagreeing parser would find it. The answer must be a clean 400 (431 for
// floods) with the connection closed, and the upstream must see neither the outer request nor the
// smuggled one (it counts every request it receives).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AirlockHandle, TestUpstream } from '../helpers/servers.js';
import { alongside, exchange, send, tunnelTls, startGuardedRig } from './helpers.js';
import type { DialRecorder, Exchange, GuardedRig, ProxyAddress } from './helpers.js';

const POLICY = `
version: 1
name: smuggling
allow:
  - host: good.test
`;

let rig: GuardedRig;
let plainUp: TestUpstream;
let tlsUp: TestUpstream;
let dials: DialRecorder;
let airlock: AirlockHandle;
let proxy: ProxyAddress;
let bundle: string;

beforeAll(async () => {
  rig = await startGuardedRig({ policy: POLICY });
  ({ plainUp, tlsUp, dials, airlock, proxy, bundle } = rig);
});

afterAll(() => rig?.close());

const GOOD = 'http://good.test/healthy';

/** How a request is framed on one path: plain proxy (absolute URI + credential) or in a tunnel. */
interface Path {
  readonly name: 'plain' | 'tunnel';
  target(path: string): string;
  /** Proxy-Authorization line (plain) or nothing (tunnel), CRLF-terminated. */
  readonly auth: string;
  run(data: string): Promise<Exchange>;
}

const PATHS: Path[] = [
  {
    name: 'plain',
    target: (p) => `http://good.test${p}`,
    get auth() {
      return `Proxy-Authorization: ${proxy.auth}\r\n`;
    },
    run: (data) => send(proxy, data, { timeoutMs: 5_000 }),
  },
  {
    name: 'tunnel',
    target: (p) => p,
    auth: '',
    run: async (data) => {
      const tls = await tunnelTls(proxy, 'good.test:443', { ca: bundle });
      try {
        return await exchange(tls, data, { timeoutMs: 5_000 });
      } finally {
        tls.destroy();
      }
    },
  },
];

// Each payload: (path framing, unique id) → raw bytes. The smuggled request is well-formed and
// authenticated, so if the proxy ever split it out it would be forwarded and counted.
type Payload = (p: Path, id: string) => string;
const smuggled = (p: Path, id: string) => `GET ${p.target(`/smuggled-${id}`)} HTTP/1.1\r\nHost: good.test\r\n${p.auth}\r\n`;
const head = (p: Path, id: string, method = 'POST') => `${method} ${p.target(`/a6-${id}`)} HTTP/1.1\r\nHost: good.test\r\n${p.auth}`;

const SMUGGLING: Record<string, Payload> = {
  'Content-Length + Transfer-Encoding: chunked': (p, id) => `${head(p, id)}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${smuggled(p, id)}`,
  'Transfer-Encoding: chunked + Content-Length (reverse order)': (p, id) => `${head(p, id)}Transfer-Encoding: chunked\r\nContent-Length: 60\r\n\r\n0\r\n\r\n${smuggled(p, id)}`,
  'two different Content-Lengths': (p, id) => `${head(p, id)}Content-Length: 0\r\nContent-Length: 70\r\n\r\n${smuggled(p, id)}`,
  'Content-Length list "0, 70"': (p, id) => `${head(p, id)}Content-Length: 0, 70\r\n\r\n${smuggled(p, id)}`,
  'Content-Length: +0': (p, id) => `${head(p, id)}Content-Length: +0\r\n\r\n${smuggled(p, id)}`,
  'Transfer-Encoding: chunked, identity': (p, id) => `${head(p, id)}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n${smuggled(p, id)}`,
  'two Transfer-Encoding headers (chunked, x)': (p, id) => `${head(p, id)}Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n${smuggled(p, id)}`,
  'space before the colon ("Transfer-Encoding : chunked")': (p, id) => `${head(p, id)}Transfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n${smuggled(p, id)}`,
  'obs-fold header line (X-A: b CRLF SP c)': (p, id) => `${head(p, id, 'GET')}X-A: b\r\n c\r\n\r\n${smuggled(p, id)}`,
  'obs-fold Transfer-Encoding (TE: CRLF SP chunked)': (p, id) => `${head(p, id)}Transfer-Encoding:\r\n chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n${smuggled(p, id)}`,
  'bare LF line endings': (p, id) => (`${head(p, id, 'GET')}\r\n`.replace(/\r\n/g, '\n') + smuggled(p, id)),
  'bare LF in one header line': (p, id) => `${head(p, id, 'GET')}X-A: 1\nX-B: 2\r\n\r\n${smuggled(p, id)}`,
  'bare LF after a chunk size': (p, id) => `${head(p, id)}Transfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n${smuggled(p, id)}`,
  'NUL in a header value': (p, id) => `${head(p, id, 'GET')}X-A: a\x00b\r\n\r\n${smuggled(p, id)}`,
};

function expectNotForwarded(id: string) {
  for (const up of [plainUp, tlsUp]) {
    expect(up.requests.filter((r) => r.url.includes(`/a6-${id}`) || r.url.includes(`/smuggled-${id}`))).toEqual([]);
  }
}

let seq = 0;
const seenAudit = new Set<string>();

describe('attack 6: request smuggling', () => {
  for (const path of PATHS) {
    for (const [name, payload] of Object.entries(SMUGGLING)) {
      it(`${path.name}: ${name} → 400, connection closed, nothing forwarded`, async () => {
        const id = `${path.name}-${++seq}`;
        const r = await alongside(proxy, GOOD, () => path.run(payload(path, id)));
        expect(r.status).toBe(400);
        expect(r.closed).toBe(true);
        expect(r.text).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
        // exactly one response: the smuggled request was never parsed as a request
        expect(r.text.match(/HTTP\/1\.1 /g)).toHaveLength(1);
        expectNotForwarded(id);
        if (path.name === 'tunnel') {
          // Inside a tunnel the session is known: the attempt is in its audit log.
          const line = await airlock.waitForAudit((l) => l.kind === 'request' && l.status === 400 && /^HPE_/.test(l.detail ?? '') && !seenAudit.has(l.id));
          seenAudit.add(line.id);
          expect(line).toMatchObject({ host: 'good.test', port: 443, action: 'deny', reason: 'bad_request' });
        }
      });
    }

    it(`${path.name}: duplicate Host headers → 400 bad_request, audited, nothing forwarded`, async () => {
      const id = `${path.name}-${++seq}`;
      const data = `GET ${path.target(`/a6-${id}`)} HTTP/1.1\r\nHost: good.test\r\nHost: evil.test\r\n${path.auth}\r\n${smuggled(path, id)}`;
      const r = await alongside(proxy, GOOD, () => path.run(data));
      expect(r.status).toBe(400);
      expect(r.closed).toBe(true);
      expect(r.text).toContain('more than one Host header');
      expect(r.text.match(/HTTP\/1\.1 /g)).toHaveLength(1);
      const line = await airlock.waitForAudit((l) => l.path.includes(`/a6-${id}`));
      expect(line).toMatchObject({ status: 400, action: 'deny', reason: 'bad_request' });
      expectNotForwarded(id);
    });
  }
});

describe('attack 7: header floods and oversized request lines', () => {
  const FLOODS: Record<string, (p: Path, id: string) => string> = {
    '10,000 headers': (p, id) => `${head(p, id, 'GET')}${Array.from({ length: 10_000 }, (_, i) => `X-F${i}: v\r\n`).join('')}\r\n`,
    'one 100 KB header line': (p, id) => `${head(p, id, 'GET')}X-Big: ${'a'.repeat(100 * 1024)}\r\n\r\n`,
    '100 KB request line': (p, id) => `GET ${p.target(`/a6-${id}?q=${'b'.repeat(100 * 1024)}`)} HTTP/1.1\r\nHost: good.test\r\n${p.auth}\r\n`,
    '1 MB of header bytes without an end': (p, id) => `${head(p, id, 'GET')}X-Endless: ${'c'.repeat(1024 * 1024)}`,
  };
  for (const path of PATHS) {
    for (const [name, payload] of Object.entries(FLOODS)) {
      it(`${path.name}: ${name} → 431 (or 400), connection closed, nothing forwarded`, async () => {
        const id = `${path.name}-${++seq}`;
        const r = await alongside(proxy, GOOD, () => path.run(payload(path, id)));
        expect([400, 431]).toContain(r.status);
        expect(r.closed).toBe(true);
        expectNotForwarded(id);
        if (path.name === 'tunnel') {
          const line = await airlock.waitForAudit((l) => l.kind === 'request' && l.status === r.status && /^HPE_/.test(l.detail ?? '') && !seenAudit.has(l.id));
          seenAudit.add(line.id);
          expect(line).toMatchObject({ host: 'good.test', action: 'deny', reason: 'bad_request' });
        }
      });
    }
  }

  it('CONNECT with a 100 KB header → 431, no tunnel', async () => {
    const r = await alongside(proxy, GOOD, () =>
      send(proxy, `CONNECT good.test:443 HTTP/1.1\r\nHost: good.test:443\r\nProxy-Authorization: ${proxy.auth}\r\nX-Big: ${'d'.repeat(100 * 1024)}\r\n\r\n`),
    );
    expect(r.status).toBe(431);
    expect(r.closed).toBe(true);
  });

  it('CONNECT with an oversized authority (100 KB) → 431 or 400, nothing dialled', async () => {
    const before = dials.dials.length;
    const r = await alongside(proxy, GOOD, () =>
      send(proxy, `CONNECT ${'e'.repeat(100 * 1024)}.test:443 HTTP/1.1\r\nProxy-Authorization: ${proxy.auth}\r\n\r\n`),
    );
    expect([400, 431]).toContain(r.status);
    expect(r.closed).toBe(true);
    expect(dials.dials.length).toBe(before);
  });
});
