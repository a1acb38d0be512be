// A hostile session tries to write audit lines of its own: JSON, quotes, CR/LF (raw and
// percent-encoded), U+2028 and forged chain fields in the request target, the Host header, a
// CONNECT target and other headers. Every byte it controls stays inside a JSON string of the one
// line its request gets: the log still parses line by line, holds exactly the lines the proxy
// wrote, carries no forged record, and verifies. Nor does it learn the audit key.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli, startAirlock, startHttpUpstream, waitFor } from '../helpers/servers.js';
import type { AirlockHandle, TestUpstream } from '../helpers/servers.js';
import { rawConnect } from '../helpers/clients.js';

let upstream: TestUpstream;
let airlock: AirlockHandle;

const FORGED = '{"event":"admit","time":"2020-01-01T00:00:00.000Z","session":"s-000000000000","id":"forged","seq":1,"prev":"00","mac":"00"}';

beforeAll(async () => {
  upstream = await startHttpUpstream();
  airlock = await startAirlock({
    policy: 'version: 1\nname: forgery\nallow:\n  - host: api.forge.test\n',
    resolve: { 'api.forge.test:80': upstream.port },
  });
}, 30_000);

afterAll(async () => {
  await airlock?.close();
  await upstream?.close();
});

/** Sends raw bytes to the proxy and reads until it closes (or answers once). */
function raw(bytes: string | Buffer): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port: airlock.port });
    let got = '';
    socket.on('data', (c: Buffer) => {
      got += c.toString('latin1');
      if (/\r\n\r\n/.test(got) && /content-length: 0|\r\n\r\n[\s\S]+/i.test(got)) socket.end();
    });
    socket.on('error', () => resolve(got));
    socket.on('close', () => resolve(got));
    socket.write(bytes);
    setTimeout(() => socket.destroy(), 3000);
  });
}

describe('a session forging audit lines', () => {
  it('JSON, CR/LF and chain fields in targets and headers stay inside the one line of each request', async () => {
    const auth = `Proxy-Authorization: ${airlock.proxyAuthorization}`;
    const enc = encodeURIComponent(`\r\n${FORGED}\r\n`);
    const attempts: string[] = [
      // Percent-encoded CR/LF and a whole forged line in the path and the query.
      `GET http://api.forge.test/a${enc}?q=${enc} HTTP/1.1\r\nHost: api.forge.test\r\n${auth}\r\n\r\n`,
      // Quotes and braces raw in the path (some parsers let them through), and U+2028 raw.
      `GET http://api.forge.test/b"},"action":"allow","x":{"y":"z HTTP/1.1\r\nHost: api.forge.test\r\n${auth}\r\n\r\n`,
      `GET http://api.forge.test/b2\u2028z HTTP/1.1\r\nHost: api.forge.test\r\n${auth}\r\n\r\n`,
      // JSON in the Host header (refused: it is not the target's host).
      `GET http://api.forge.test/c HTTP/1.1\r\nHost: api.forge.test","action":"allow","rule":"forged\r\n${auth}\r\n\r\n`,
      // A forged line in headers that are not logged, and a method made of JSON-ish token chars.
      `GET http://api.forge.test/d HTTP/1.1\r\nHost: api.forge.test\r\nUser-Agent: x\r\nX-Note: ${FORGED}\r\n${auth}\r\n\r\n`,
      `P{"a":1} http://api.forge.test/e HTTP/1.1\r\nHost: api.forge.test\r\n${auth}\r\n\r\n`,
      // A bare LF inside the request line: a parser error, never a new line in the log.
      `GET http://api.forge.test/f\n${FORGED} HTTP/1.1\r\nHost: api.forge.test\r\n${auth}\r\n\r\n`,
    ];
    const answers: string[] = [];
    for (const a of attempts) answers.push((await raw(a)).split('\r\n')[0]!);
    // Those the parser takes are answered (and audited) as the session's requests; the others
    // are refused before any session is known, so only the proxy's own log has them.
    expect(answers).toEqual([
      'HTTP/1.1 200 OK',
      'HTTP/1.1 200 OK',
      'HTTP/1.1 400 Bad Request',
      'HTTP/1.1 403 Forbidden',
      'HTTP/1.1 200 OK',
      'HTTP/1.1 400 Bad Request',
      'HTTP/1.1 400 Bad Request',
    ]);
    // A CONNECT target holding JSON and an encoded line break.
    await rawConnect({ proxyPort: airlock.port, target: `api.forge.test","rule":"x%0a${encodeURIComponent(FORGED)}:443`, proxyAuthorization: airlock.proxyAuthorization }).catch(() => null);
    await waitFor(async () => (await airlock.auditLines()).length >= 4, 5_000, 'the attempts to be audited');
    await airlock.runtime.sessions.remove(airlock.session.id);

    const text = readFileSync(join(airlock.session.dir, 'audit.jsonl'), 'utf8');
    const lines = text.split('\n').slice(0, -1);
    const records = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    // Every line is one the proxy wrote: its own session, its own ids, nothing forged.
    for (const r of records) {
      expect(r.session).toBe(airlock.session.id);
      expect(r.id === undefined || /^[0-9a-f]{6}-[0-9a-z]+$/.test(String(r.id))).toBe(true);
      expect(r.rule === undefined || r.rule === null || r.rule === 'allow[0] api.forge.test').toBe(true);
      expect(Object.keys(r).filter((k) => !KNOWN.has(k))).toEqual([]);
    }
    expect(records.some((r) => r.id === 'forged')).toBe(false);
    expect(text).not.toContain('\r');
    expect(text).not.toContain('\u2028');
    // One end line per attempt that reached the session (the LF one is refused before auth).
    const ends = records.filter((r) => r.event === undefined);
    expect(ends.length).toBeGreaterThanOrEqual(4);
    // Upstream saw only what the log admitted.
    const admitted = records.filter((r) => r.event === 'admit');
    expect(admitted).toHaveLength(upstream.requests.length);
    // And the chain holds.
    const v = await runCli(['audit', 'verify', airlock.session.id, '--state-dir', airlock.stateDir]);
    expect(v.code, v.stderr).toBe(0);
  });

  it('the audit key is nowhere the session can read through the proxy: not in its directory, env or answers', async () => {
    const key = readFileSync(join(airlock.stateDir, 'audit.key'), 'utf8').trim();
    const files = readdirSync(airlock.session.dir, { recursive: true }) as string[];
    for (const f of files) {
      let content = '';
      try {
        content = readFileSync(join(airlock.session.dir, f), 'utf8');
      } catch {
        continue; // a directory
      }
      expect(content, f).not.toContain(key);
    }
    // The session's environment under exec: the key's value appears nowhere in it.
    writeFileSync(join(airlock.stateDir, 'p.yaml'), 'version: 1\nname: env\nallow: []\n');
    const exec = await runCli(['exec', '--policy', join(airlock.stateDir, 'p.yaml'), '--state-dir', airlock.stateDir, '--', 'env']);
    expect(exec.code, exec.stderr).toBe(0);
    expect(exec.stdout).toContain('HTTPS_PROXY=');
    expect(exec.stdout + exec.stderr).not.toContain(key);
  });
});

const KNOWN = new Set([
  'event', 'time', 'session', 'id', 'kind', 'method', 'scheme', 'host', 'port', 'path', 'status', 'action', 'policy_version', 'rule', 'reason',
  'credentials', 'bytes_up', 'bytes_down', 'duration_ms', 'detail', 'seq', 'prev', 'mac', 'file', 'pid',
]);
