// The destination guard at a session's very first request. The guard builds its blocked ranges
// and reads this host's addresses at its first check, not when the session starts (ARCHITECTURE.md,
// Start-up), so the first check must refuse as every later one does. Each case is a fresh
// `airlock exec` process whose command is one curl, sent through the proxy (--noproxy '' overrides
// the session's NO_PROXY for loopback), to an address of this host in one of its spellings: IPv4,
// IPv4-mapped IPv6, NAT64, IPv4-compatible, 6to4, ::1, an interface's own address. A server listens
// on every address of this host at the port asked for (as a service bound to 0.0.0.0 would) and
// must never see a connection. With --allow-private opening the address's range, only the check
// against this host's addresses (read lazily) stands between the session and that server.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { networkInterfaces } from 'node:os';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { rmTmp, runCli, tmpDir } from '../helpers/servers.js';

let dir: string;
let server: net.Server;
let port: number;
let connections = 0;

/** A non-internal IPv4 address of this host, if it has one (an interface's own address). */
const ifaceV4 = Object.values(networkInterfaces())
  .flat()
  .find((i) => i && i.family === 'IPv4' && !i.internal)?.address;

const v4Hex = (a: string) => {
  const b = a.split('.').map(Number);
  return `${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`;
};

interface Case {
  /** The URL's host, as curl sends it. */
  readonly target: string;
  /** The policy rule's host. */
  readonly rule: string;
  readonly allowPrivate: readonly string[];
  /** What the refusal must say. */
  readonly why: string;
}

const CASES: Case[] = [
  // 127.0.0.2, not .1: exec's proxy listens on 127.0.0.1, which its own-address check refuses first.
  { target: '127.0.0.2', rule: '127.0.0.2', allowPrivate: [], why: 'loopback (127.0.0.0/8)' },
  { target: '[::ffff:127.0.0.2]', rule: '::ffff:127.0.0.2', allowPrivate: [], why: 'loopback (127.0.0.0/8)' },
  { target: '[::1]', rule: '::1', allowPrivate: [], why: 'loopback (::1)' },
  { target: '[64:ff9b::7f00:2]', rule: '64:ff9b::7f00:2', allowPrivate: [], why: 'loopback (127.0.0.0/8), embedded in' },
  // allow_private opens the range; the host's own addresses stay closed, read at this first check.
  { target: '127.0.0.2', rule: '127.0.0.2', allowPrivate: ['127.0.0.0/8'], why: 'an address of this host' },
  { target: '[::ffff:127.0.0.2]', rule: '::ffff:127.0.0.2', allowPrivate: ['127.0.0.0/8'], why: 'an address of this host' },
  { target: '[::1]', rule: '::1', allowPrivate: ['::1/128'], why: 'an address of this host' },
  { target: '[::127.0.0.2]', rule: '::127.0.0.2', allowPrivate: ['127.0.0.0/8'], why: 'an address of this host, embedded in' },
  { target: '[2002:7f00:2::1]', rule: '2002:7f00:2::1', allowPrivate: ['127.0.0.0/8'], why: 'an address of this host, embedded in' },
  ...(ifaceV4
    ? [
        { target: ifaceV4, rule: ifaceV4, allowPrivate: [`${ifaceV4}/32`], why: 'an address of this host' },
        { target: `[::ffff:${ifaceV4}]`, rule: `::ffff:${ifaceV4}`, allowPrivate: [`${ifaceV4}/32`], why: 'an address of this host' },
        { target: `[64:ff9b::${v4Hex(ifaceV4)}]`, rule: `64:ff9b::${v4Hex(ifaceV4)}`, allowPrivate: [`${ifaceV4}/32`], why: 'an address of this host, embedded in' },
      ]
    : []),
];

beforeAll(async () => {
  dir = tmpDir('airlock-first-check-');
  server = net.createServer((socket) => {
    connections++;
    socket.end('HTTP/1.1 200 OK\r\ncontent-length: 7\r\nconnection: close\r\n\r\nreached');
  });
  // Every address of this host, IPv4 through the dual-stack socket; IPv4 only where there is no IPv6.
  await new Promise<void>((resolve, reject) => {
    server.once('error', () => {
      server.removeAllListeners('error');
      server.once('error', reject);
      server.listen({ host: '0.0.0.0', port: 0 }, resolve);
    });
    server.listen({ host: '::', port: 0, ipv6Only: false }, resolve);
  });
  port = (server.address() as net.AddressInfo).port;
  writeFileSync(
    join(dir, 'policy.yaml'),
    `version: 1\nname: first-check\nallow:\n${[...new Set(CASES.map((c) => c.rule))].map((h) => `  - host: "${h}"\n    ports: [${port}]\n`).join('')}`,
  );
});

afterAll(async () => {
  await new Promise<void>((resolve) => server?.close(() => resolve()));
  rmTmp(dir);
});

describe("the destination guard at an exec session's first request", () => {
  it('the listening server is reachable directly (the control: a broken guard would reach it)', async () => {
    const before = connections;
    const r = await new Promise<string>((resolve, reject) => {
      const s = net.connect({ host: ifaceV4 ?? '127.0.0.1', port });
      let text = '';
      s.setEncoding('utf8').on('data', (c: string) => (text += c));
      s.once('end', () => resolve(text));
      s.once('error', reject);
    });
    expect(r).toContain('reached');
    expect(connections).toBe(before + 1);
  });

  for (const c of CASES) {
    const flags = c.allowPrivate.flatMap((p) => ['--allow-private', p]);
    it(`http://${c.target}:PORT/ ${flags.join(' ') || '(no --allow-private)'} → 403 destination_blocked (${c.why}), nothing dialled`, async () => {
      const stateDir = tmpDir('airlock-first-check-state-');
      const body = join(stateDir, 'body.json');
      try {
        const before = connections;
        const r = await runCli(
          ['exec', '--state-dir', stateDir, '--policy', join(dir, 'policy.yaml'), ...flags, '--',
            'curl', '-sS', '--noproxy', '', '-o', body, '-w', '%{http_code}', '--max-time', '10', `http://${c.target}:${port}/first`],
          { timeoutMs: 30_000 },
        );
        expect(r.stdout, r.stderr).toBe('403');
        const answer = JSON.parse(readFileSync(body, 'utf8')) as { reason: string; message: string };
        expect(answer.reason).toBe('destination_blocked');
        expect(answer.message).toContain(c.why);
        expect(connections).toBe(before);
        // The one request, audited as that refusal.
        const audit = /audit: (\S+audit\.jsonl)/.exec(r.stderr)?.[1];
        expect(audit, r.stderr).toBeDefined();
        const lines = readFileSync(audit!, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
        expect(lines.filter((l) => l.kind === 'request' && l.event !== 'admit')).toEqual([expect.objectContaining({ status: 403, reason: 'destination_blocked', port })]);
      } finally {
        rmTmp(stateDir);
      }
    }, 40_000);
  }
});
