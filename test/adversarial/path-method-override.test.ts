// Findings 8 and 9: walking out of a path rule with encodings the upstream decodes differently, and
// getting past a method rule with a method override the upstream honours.
//   8. /v1/..;/admin, /v1/..%2fadmin, %252e%252e, overlong UTF-8 ... against `paths: ["/v1/*"]`
//   9. X-HTTP-Method-Override / X-HTTP-Method / X-Method-Override / ?_method= against `methods:`
// Every attack is sent as raw bytes three ways: inside a CONNECT+TLS tunnel on the fast path,
// inside the tunnel through Node's parser (a chunked body sends it there), and as a plain-HTTP
// absolute URI. The upstreams are real servers on loopback that record every request they get:
// an attack must be answered 403 with the right reason, reach no upstream, and be audited.
// The user's side is checked too: ordinary encoded paths, overrides to allowed methods, and rules
// without paths:/methods: (which forward such requests unchanged).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestPki, rmTmp, runProcess, startHttpUpstream, startHttpsUpstream } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import { parseRequestHead } from '../../src/proxy/http1/request-head.js';
import { exchange, send, startGuardedAirlock, tunnelTls, upgradeHead } from './helpers.js';
import type { DialRecorder, ProxyAddress } from './helpers.js';

const POLICY = `
version: 1
name: path-method
allow:
  - host: paths.test        # allow[0]
    paths: ["/v1/*", "/files/*.txt"]
  - host: open.test         # allow[1]
  - host: getonly.test      # allow[2]
    methods: [GET]
  - host: patch.test        # allow[3]
    methods: [POST, PATCH]
`;
const NAMES = ['paths.test', 'open.test', 'getonly.test', 'patch.test'];
const PATHS_RULE = 'allow[0] paths.test';
const GET_RULE = 'allow[2] getonly.test';
const PATCH_RULE = 'allow[3] patch.test';

let pki: TestPki;
let tlsUp: TestUpstream;
let plainUp: TestUpstream;
let airlock: AirlockHandle;
let dials: DialRecorder;
let proxy: ProxyAddress;
let bundle: string;

beforeAll(async () => {
  pki = await createTestPki();
  tlsUp = await startHttpsUpstream({ pki, names: NAMES });
  plainUp = await startHttpUpstream();
  const resolve: Record<string, number> = {};
  for (const name of NAMES) {
    resolve[`${name}:443`] = tlsUp.port;
    resolve[`${name}:80`] = plainUp.port;
  }
  ({ airlock, dials, proxy, bundle } = await startGuardedAirlock({ policy: POLICY, resolve, upstreamCa: [pki.caPem] }));
});

afterAll(async () => {
  await airlock?.close();
  await Promise.all([tlsUp?.close(), plainUp?.close()]);
  rmTmp(pki?.dir);
});

// ---------------------------------------------------------------- sending

/**
 * tunnel: inside a CONNECT+TLS tunnel, read by the fast path when the head is in its subset (a
 * backslash is not: that one goes to Node's parser); tunnel-node: inside the tunnel with a chunked
 * body, which always goes to Node's parser; plain: an absolute URI to the proxy.
 */
type Channel = 'tunnel' | 'tunnel-node' | 'plain';
const CHANNELS: readonly Channel[] = ['tunnel', 'tunnel-node', 'plain'];

let tagCounter = 0;
/** A query key no other request uses, so upstream records and audit lines can be told apart. */
function tagged(target: string): { target: string; tag: string } {
  const tag = `__${++tagCounter}__`;
  return { target: target + (target.includes('?') ? '&' : '?') + tag, tag };
}

interface Answer {
  readonly status: number;
  readonly head: string;
  /** The 403 body, parsed. */
  readonly denial: { reason: string; rule: string; message: string } | null;
  readonly body: string;
}

/** The request head (and body) as a channel sends it. */
function requestBytes(channel: Channel, host: string, method: string, target: string, headers: readonly string[]): { head: string; body: string } {
  const lines = [`${method} ${channel === 'plain' ? `http://${host}${target}` : target} HTTP/1.1`, `Host: ${host}`, ...headers];
  if (channel === 'plain') lines.push(`Proxy-Authorization: ${proxy.auth}`);
  // A chunked body is outside the fast path's subset: the tunnel hands the connection to Node.
  if (channel === 'tunnel-node') lines.push('Transfer-Encoding: chunked');
  else if (method === 'POST' || method === 'PUT' || method === 'PATCH') lines.push('Content-Length: 2');
  lines.push('Connection: close');
  const head = lines.join('\r\n') + '\r\n\r\n';
  const body = channel === 'tunnel-node' ? '2\r\n{}\r\n0\r\n\r\n' : method === 'POST' || method === 'PUT' || method === 'PATCH' ? '{}' : '';
  return { head, body };
}

/** True when the tunnel's fast path reads this head (false: Node's parser gets it). */
function onFastPath(head: string): boolean {
  const buf = Buffer.from(head, 'latin1');
  return parseRequestHead(buf, buf.indexOf('\r\n\r\n')) !== null;
}

async function ask(channel: Channel, host: string, method: string, target: string, headers: readonly string[] = []): Promise<Answer> {
  const { head, body } = requestBytes(channel, host, method, target, headers);
  let text: string;
  if (channel === 'plain') {
    text = (await send(proxy, head + body, { untilResponse: true })).text;
  } else {
    const socket = await tunnelTls(proxy, `${host}:443`, { ca: bundle });
    try {
      text = (await exchange(socket, head + body, { untilResponse: true })).text;
    } finally {
      socket.destroy();
    }
  }
  const end = text.indexOf('\r\n\r\n');
  const responseHead = text.slice(0, end);
  const responseBody = text.slice(end + 4);
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(responseHead)?.[1] ?? 0);
  return { status, head: responseHead, body: responseBody, denial: status === 403 ? JSON.parse(responseBody) : null };
}

/** Requests carrying `tag` that reached either upstream. */
function received(tag: string) {
  return [...tlsUp.requests, ...plainUp.requests].filter((r) => r.url.includes(tag));
}

async function expectRefused(
  channel: Channel,
  host: string,
  method: string,
  path: string,
  headers: readonly string[],
  want: { reason: string; rule: string; message: RegExp },
): Promise<void> {
  const { target, tag } = tagged(path);
  const what = `${channel}: ${method} ${target} ${headers.join(' | ')}`;
  const answer = await ask(channel, host, method, target, headers);
  expect(answer.status, what).toBe(403);
  expect(answer.head, what).toMatch(new RegExp(`\\r\\nX-Airlock-Decision: deny; reason=${want.reason}`, 'i'));
  expect(answer.denial, what).toMatchObject({ reason: want.reason, rule: want.rule });
  expect(answer.denial!.message, what).toMatch(want.message);
  expect(answer.denial!.message, what).toContain(want.rule);
  expect(received(tag), what).toEqual([]);
  const line = await airlock.waitForAudit((l) => l.kind === 'request' && l.path.includes(tag));
  expect(line, what).toMatchObject({ host, method, status: 403, action: 'deny', reason: want.reason, rule: want.rule });
}

async function expectForwarded(channel: Channel, host: string, method: string, path: string, headers: readonly string[] = []) {
  const { target, tag } = tagged(path);
  const what = `${channel}: ${method} ${target} ${headers.join(' | ')}`;
  const answer = await ask(channel, host, method, target, headers);
  expect(answer.status, `${what}: ${answer.body.slice(0, 300)}`).toBe(200);
  const got = received(tag);
  expect(got, what).toHaveLength(1);
  const line = await airlock.waitForAudit((l) => l.kind === 'request' && l.path.includes(tag));
  expect(line, what).toMatchObject({ host, method, status: 200, action: 'allow', reason: 'allowed' });
  return { sent: target, got: got[0]! };
}

afterAll(() => {
  // Nothing in this file may have dialled anything but the local upstreams.
  expect(dials.refused).toEqual([]);
});

// ---------------------------------------------------------------- 8: path encodings

const AMBIGUOUS = /ambiguous/i;

/** Paths that a paths: ["/v1/*", "/files/*.txt"] rule passed before, and servers read differently. */
const PATH_ATTACKS: readonly { name: string; path: string }[] = [
  { name: '..; (Tomcat/Spring read it as ..)', path: '/v1/..;/admin' },
  { name: '..;param', path: '/v1/..;jsessionid=x/admin' },
  { name: '.; (a dot segment with a parameter)', path: '/v1/.;/x' },
  { name: '%2e%2e;x (encoded dots and a parameter)', path: '/v1/%2e%2e;x/admin' },
  { name: '..%2f (encoded slash)', path: '/v1/..%2fadmin' },
  { name: '..%2F (encoded slash, upper case)', path: '/v1/..%2Fadmin' },
  { name: '%2e%2e%2f (encoded dots and slash)', path: '/v1/%2e%2e%2fadmin' },
  { name: '..%5c (encoded backslash)', path: '/v1/..%5cadmin' },
  { name: '%2E%2E%5C (upper case)', path: '/v1/%2E%2E%5Cadmin' },
  { name: '%252e%252e (double-encoded dots)', path: '/v1/%252e%252e/admin' },
  { name: '%252f (double-encoded slash)', path: '/v1/..%252fadmin' },
  { name: '%25%32%65 (double-encoded, spelled out)', path: '/v1/%25%32%65%25%32%65/admin' },
  { name: 'encoded dot segment inside the prefix (%2e%2e)', path: '/v1/a/%2e%2e/b' },
  { name: 'encoded dot segment, mixed (.%2e)', path: '/v1/a/.%2e/b' },
  { name: 'backslash', path: '/v1/a\\b' },
  { name: '%00 (NUL: truncating servers serve /files/secret.key)', path: '/files/secret.key%00.txt' },
  { name: 'overlong UTF-8 dots (%c0%ae)', path: '/v1/%c0%ae%c0%ae/admin' },
  { name: 'overlong UTF-8 slash (%c0%af)', path: '/v1/..%c0%afadmin' },
  { name: "IIS %u escapes", path: '/v1/%u002e%u002e/admin' },
  { name: 'fullwidth dots (NFKC turns them into ..)', path: '/v1/%ef%bc%8e%ef%bc%8e/admin' },
  { name: 'fullwidth solidus (NFKC turns it into /)', path: '/v1/..%ef%bc%8fadmin' },
  { name: ';param before the suffix (servers that drop it serve /files/secret.key)', path: '/files/secret.key;.txt' },
];

describe('8: a paths: rule refuses paths that servers decode differently', () => {
  const cases = PATH_ATTACKS.flatMap((attack) => CHANNELS.map((channel) => ({ ...attack, channel })));
  it.each(cases)('[$channel] $name: $path → 403 path_not_allowed, not forwarded, audited', async ({ channel, path }) => {
    await expectRefused(channel, 'paths.test', 'GET', path, [], { reason: 'path_not_allowed', rule: PATHS_RULE, message: AMBIGUOUS });
  });

  it('the same attack on both tunnel readers: the fast path and Node’s parser', async () => {
    expect(onFastPath(requestBytes('tunnel', 'paths.test', 'POST', '/v1/..%2fadmin', []).head)).toBe(true);
    expect(onFastPath(requestBytes('tunnel-node', 'paths.test', 'POST', '/v1/..%2fadmin', []).head)).toBe(false);
    for (const channel of ['tunnel', 'tunnel-node'] as const) {
      await expectRefused(channel, 'paths.test', 'POST', '/v1/..%2fadmin', [], { reason: 'path_not_allowed', rule: PATHS_RULE, message: AMBIGUOUS });
    }
  });

  it.each(CHANNELS)('[%s] a path override header (X-Original-URL, X-Rewrite-URL) on a paths: rule → 403, not forwarded', async (channel) => {
    for (const header of ['X-Original-URL: /admin', 'x-rewrite-url: /admin']) {
      await expectRefused(channel, 'paths.test', 'GET', '/v1/ok', [header], { reason: 'path_not_allowed', rule: PATHS_RULE, message: AMBIGUOUS });
    }
  });

  it('a WebSocket upgrade with an ambiguous path → 403 path_not_allowed, audited', async () => {
    const { target, tag } = tagged('/v1/..;/admin');
    const r = await send(proxy, upgradeHead(`http://paths.test${target}`, 'paths.test', proxy.auth));
    expect(r.status).toBe(403);
    expect(r.text).toContain('"reason":"path_not_allowed"');
    expect(received(tag)).toEqual([]);
    const line = await airlock.waitForAudit((l) => l.kind === 'websocket' && l.path.includes(tag));
    expect(line).toMatchObject({ status: 403, action: 'deny', reason: 'path_not_allowed', rule: PATHS_RULE });
  });

  it('curl --path-as-is through CONNECT and TLS: 403 path_not_allowed naming the rule', async () => {
    const r = await curl(['--path-as-is', `https://paths.test/v1/..;/admin?__curl_path__`]);
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body)).toMatchObject({ reason: 'path_not_allowed', rule: PATHS_RULE });
    expect(JSON.parse(r.body).message).toMatch(AMBIGUOUS);
    expect(received('__curl_path__')).toEqual([]);
    await airlock.waitForAudit((l) => l.path.includes('__curl_path__') && l.status === 403);
  });
});

describe('8, user side: ordinary paths still pass', () => {
  const ORDINARY = ['/v1/a%20b', '/v1/caf%C3%A9', '/v1/100%25', '/v1/file%2ejson', '/v1/a;v=1', '/v1//double', '/v1/~user/x', '/files/a%2Eb.txt'];
  it.each(ORDINARY)('%s passes paths: ["/v1/*", "/files/*.txt"] and is forwarded byte for byte', async (path) => {
    for (const channel of CHANNELS) {
      const { sent, got } = await expectForwarded(channel, 'paths.test', 'GET', path);
      expect(got.url, channel).toBe(sent);
    }
  });

  it('a rule without paths: forwards the attack paths unchanged (host-only rules are unaffected)', async () => {
    for (const attack of PATH_ATTACKS) {
      // Backslashes and plain encoded dot segments are resolved before forwarding, as before.
      if (attack.path.includes('\\') || /\/(?:\.|%2e){1,2}\//i.test(attack.path)) continue;
      for (const channel of CHANNELS) {
        const { sent, got } = await expectForwarded(channel, 'open.test', 'GET', attack.path);
        expect(got.url, `${channel} ${attack.path}`).toBe(sent);
      }
    }
  });

  it('curl: an encoded path passes', async () => {
    const r = await curl(['https://paths.test/v1/caf%C3%A9?__curl_ok__']);
    expect(r.status).toBe(200);
    expect(received('__curl_ok__').map((x) => x.url)).toEqual(['/v1/caf%C3%A9?__curl_ok__']);
  });
});

// ---------------------------------------------------------------- 9: method overrides

const OVERRIDE_ATTACKS: readonly { name: string; host: string; rule: string; method: string; path: string; headers: string[]; names: RegExp }[] = [
  { name: 'X-HTTP-Method-Override: DELETE on GET-only', host: 'getonly.test', rule: GET_RULE, method: 'GET', path: '/x', headers: ['X-HTTP-Method-Override: DELETE'], names: /X-HTTP-Method-Override.*DELETE/ },
  { name: 'x-http-method: PUT (any case)', host: 'getonly.test', rule: GET_RULE, method: 'GET', path: '/x', headers: ['x-http-method: PUT'], names: /x-http-method.*PUT/i },
  { name: 'X-METHOD-OVERRIDE: delete (value upper-cased as frameworks do)', host: 'getonly.test', rule: GET_RULE, method: 'GET', path: '/x', headers: ['X-METHOD-OVERRIDE: delete'], names: /X-METHOD-OVERRIDE.*DELETE/i },
  { name: 'X_HTTP_METHOD_OVERRIDE: DELETE (CGI-style servers read it as the dashed name)', host: 'getonly.test', rule: GET_RULE, method: 'GET', path: '/x', headers: ['X_HTTP_METHOD_OVERRIDE: DELETE'], names: /X_HTTP_METHOD_OVERRIDE.*DELETE/ },
  { name: '?_method=DELETE', host: 'getonly.test', rule: GET_RULE, method: 'GET', path: '/x?_method=DELETE', headers: [], names: /_method.*DELETE/ },
  { name: '?%5Fmethod=delete (encoded name)', host: 'getonly.test', rule: GET_RULE, method: 'GET', path: '/x?a=1&%5Fmethod=delete', headers: [], names: /_method.*DELETE/ },
  { name: '?_method=%44ELETE (encoded value)', host: 'getonly.test', rule: GET_RULE, method: 'GET', path: '/x?_method=%44ELETE', headers: [], names: /_method.*DELETE/ },
  { name: '?_method=GET&_method=DELETE (a repeat)', host: 'getonly.test', rule: GET_RULE, method: 'GET', path: '/x?_method=GET&_method=DELETE', headers: [], names: /_method.*DELETE/ },
  { name: 'POST with ?_method=DELETE on POST/PATCH', host: 'patch.test', rule: PATCH_RULE, method: 'POST', path: '/x?_method=DELETE', headers: [], names: /_method.*DELETE/ },
  { name: 'one allowed and one refused override', host: 'patch.test', rule: PATCH_RULE, method: 'POST', path: '/x', headers: ['X-HTTP-Method-Override: PATCH', 'X-HTTP-Method: DELETE'], names: /X-HTTP-Method\b.*DELETE/ },
];

describe('9: a methods: rule refuses overrides to other methods', () => {
  const cases = OVERRIDE_ATTACKS.flatMap((attack) => CHANNELS.map((channel) => ({ ...attack, channel })));
  it.each(cases)('[$channel] $name → 403 method_not_allowed, not forwarded, audited', async (c) => {
    await expectRefused(c.channel, c.host, c.method, c.path, c.headers, { reason: 'method_not_allowed', rule: c.rule, message: c.names });
  });

  it('the same override on both tunnel readers: the fast path and Node’s parser', async () => {
    const headers = ['X-HTTP-Method-Override: DELETE'];
    expect(onFastPath(requestBytes('tunnel', 'getonly.test', 'GET', '/x', headers).head)).toBe(true);
    expect(onFastPath(requestBytes('tunnel-node', 'getonly.test', 'GET', '/x', headers).head)).toBe(false);
    for (const channel of ['tunnel', 'tunnel-node'] as const) {
      await expectRefused(channel, 'getonly.test', 'GET', '/x', headers, { reason: 'method_not_allowed', rule: GET_RULE, message: /X-HTTP-Method-Override.*DELETE/ });
    }
  });

  it('curl -H "X-HTTP-Method-Override: DELETE" over plain HTTP and CONNECT: 403 method_not_allowed', async () => {
    for (const url of ['http://getonly.test/x?__curl_m1__', 'https://getonly.test/x?__curl_m2__']) {
      const r = await curl(['-H', 'X-HTTP-Method-Override: DELETE', url]);
      expect(r.status, url).toBe(403);
      expect(JSON.parse(r.body), url).toMatchObject({ reason: 'method_not_allowed', rule: GET_RULE });
      expect(JSON.parse(r.body).message, url).toMatch(/X-HTTP-Method-Override.*DELETE/);
    }
    expect(received('__curl_m')).toEqual([]);
  });
});

describe('9, user side: overrides to allowed methods, and rules without methods:', () => {
  it('POST with X-HTTP-Method-Override: PATCH (allowed) passes with the header intact', async () => {
    for (const channel of CHANNELS) {
      const { got } = await expectForwarded(channel, 'patch.test', 'POST', '/x', ['X-HTTP-Method-Override: PATCH']);
      expect(got.method).toBe('POST');
      expect(got.headers['x-http-method-override']).toBe('PATCH');
    }
  });

  it('POST ?_method=patch and GET with an override to GET pass', async () => {
    for (const channel of CHANNELS) {
      await expectForwarded(channel, 'patch.test', 'POST', '/x?_method=patch');
      await expectForwarded(channel, 'getonly.test', 'GET', '/x', ['X-HTTP-Method-Override: GET']);
      await expectForwarded(channel, 'getonly.test', 'GET', '/x?_method=GET&method=DELETE&x_method=DELETE');
    }
  });

  it('a rule without methods: forwards every override unchanged', async () => {
    for (const attack of OVERRIDE_ATTACKS) {
      for (const channel of CHANNELS) {
        const { sent, got } = await expectForwarded(channel, 'open.test', attack.method, attack.path, attack.headers);
        expect(got.url).toBe(sent);
        for (const header of attack.headers) {
          const [name, value] = header.split(': ') as [string, string];
          expect(got.headers[name.toLowerCase()]).toBe(value);
        }
      }
    }
  });
});

// ---------------------------------------------------------------- curl

async function curl(args: string[]): Promise<{ status: number; body: string }> {
  const r = await runProcess('curl', ['-sS', '--max-time', '10', '-w', '\n%{http_code}', ...args], {
    env: { PATH: process.env.PATH, HTTPS_PROXY: airlock.proxyUrl, http_proxy: airlock.proxyUrl, CURL_CA_BUNDLE: airlock.bundlePath },
  });
  const lines = r.stdout.split('\n');
  const status = Number(lines.pop());
  return { status, body: lines.join('\n') };
}
