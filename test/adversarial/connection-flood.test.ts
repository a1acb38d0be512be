// Attack 11: one session floods the proxy with idle connections (it never has to send a byte) to
// take the file descriptors every other session needs. Connections are counted from accept: per
// listener (a session's own listener is held to its policy's max_connections before anyone
// authenticates) and in all, and a connection that sends no authenticated request head within the
// auth deadline is closed. Another session keeps being served throughout.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { parsePolicy } from '../../src/policy/index.js';
import type { Session } from '../../src/sessions/session.js';
import { waitFor } from '../helpers/servers.js';
import { openIdleConnections as flood } from '../helpers/clients.js';
import type { AirlockHandle, TestUpstream } from '../helpers/servers.js';
import { basic, connectTcp, exchange, proxyConnect, proxyGet, sleep, startGuardedRig } from './helpers.js';
import type { GuardedRig, ProxyAddress } from './helpers.js';

const policy = (limits = '') => `
version: 1
name: flood
allow:
  - host: good.test
${limits}
`;

/** Plain GETs for `session` every 100 ms while `during` runs: every one answered, 200, promptly. */
async function servedThroughout<T>(proxy: ProxyAddress, during: Promise<T>, boundMs = 2_000): Promise<{ result: T; served: number; slowest: number }> {
  let done = false;
  let served = 0;
  let slowest = 0;
  const failures: string[] = [];
  const loop = (async () => {
    while (!done) {
      const t = performance.now();
      try {
        const r = await proxyGet(proxy, 'http://good.test/meanwhile');
        if (r.status !== 200) failures.push(`status ${r.status}: ${r.body.slice(0, 200)}`);
        else served++;
      } catch (err) {
        failures.push((err as Error).message);
      }
      slowest = Math.max(slowest, performance.now() - t);
      await sleep(100);
    }
  })();
  try {
    const result = await during;
    return { result, served, slowest };
  } finally {
    done = true;
    await loop;
    expect(failures).toEqual([]);
    expect(slowest).toBeLessThan(boundMs);
  }
}

/** A session with a listener of its own on 127.0.0.1 (like a Docker session's gateway listener). */
async function ownListenerSession(airlock: AirlockHandle, policyText: string): Promise<{ session: Session; proxy: ProxyAddress; name: string }> {
  const name = `session:flood-${Math.random().toString(16).slice(2, 8)}`;
  const session = await airlock.runtime.sessions.create(parsePolicy(policyText, 'flood.yaml'), { listener: name });
  const address = await airlock.runtime.proxy.listen('127.0.0.1', 0, name);
  return { session, name, proxy: { host: '127.0.0.1', port: address.port, auth: basic(session.id, session.token) } };
}

describe('attack 11a: a flood of idle connections to a session\'s own listener', () => {
  let rig: GuardedRig;
  let plainUp: TestUpstream;
  beforeAll(async () => {
    rig = await startGuardedRig({ policy: policy(), limits: { maxListenerConnections: 300 } });
    plainUp = rig.plainUp;
  });
  afterAll(() => rig?.close());

  it("3000 idle connections: the session's max_connections holds before authentication (429 with the reason), the other session is served", async () => {
    const a = await ownListenerSession(rig.airlock, policy('limits: { max_connections: 40 }'));
    const { result: f } = await servedThroughout(rig.proxy, flood(a.proxy.host, a.proxy.port, 3_000));
    try {
      // The flood resolves once the kernel accepted every connection; the proxy may still be
      // refusing the last ones. Wait for it to settle (bounded), then check it stays there.
      await waitFor(() => f.open() === 40, 15_000, 'the flood to be held to max_connections');
      await sleep(300);
      expect(f.open()).toBe(40);
      expect(rig.airlock.runtime.proxy.clientConnections(a.name)).toBe(40);
      // Those refused were told why, not just dropped.
      const refused = f.received.filter((t) => t.length > 0);
      expect(refused.length).toBe(3_000 - 40);
      expect(refused[0]).toMatch(/^HTTP\/1\.1 429 Too Many Requests\r\n/);
      expect(refused[0]).toContain(`session ${a.session.id} has 40 connections open, its policy's limit (limits.max_connections)`);
      // The flooding session itself gets nothing more until it lets go...
      await expect(exchange(await connectTcp(a.proxy.host, a.proxy.port), '', { timeoutMs: 3_000 })).resolves.toMatchObject({ status: 429, closed: true });
    } finally {
      f.close();
    }
    // ...and everything again once it does.
    await sleep(200);
    expect(rig.airlock.runtime.proxy.clientConnections(a.name)).toBe(0);
    expect((await proxyGet(a.proxy, 'http://good.test/after-flood')).status).toBe(200);
    expect(plainUp.requests.some((r) => r.url === '/after-flood')).toBe(true);
    await rig.airlock.runtime.sessions.remove(a.session.id);
  });

  it('without max_connections in its policy the per-listener cap holds it', async () => {
    const a = await ownListenerSession(rig.airlock, policy());
    const { result: f } = await servedThroughout(rig.proxy, flood(a.proxy.host, a.proxy.port, 1_000));
    try {
      await waitFor(() => f.open() === 300, 15_000, 'the flood to be held to the listener cap');
      await sleep(300);
      expect(f.open()).toBe(300);
      expect(f.received.find((t) => t.length > 0)).toContain('this proxy listener has 300 connections open, its limit');
    } finally {
      f.close();
    }
    await rig.airlock.runtime.sessions.remove(a.session.id);
  });
});

describe('attack 11b: all listeners together stay under the proxy-wide cap', () => {
  let rig: GuardedRig;
  beforeAll(async () => {
    rig = await startGuardedRig({ policy: policy(), limits: { maxListenerConnections: 100, maxClientConnections: 150 } });
  });
  afterAll(() => rig?.close());

  it('two flooding sessions fill the proxy to its cap and no further (503 with the reason); closing gives room back', async () => {
    const a = await ownListenerSession(rig.airlock, policy());
    const b = await ownListenerSession(rig.airlock, policy());
    const fa = await flood(a.proxy.host, a.proxy.port, 500);
    // A client's connect completes in the kernel before the proxy accepts it: let the proxy work
    // through the first flood before the second starts, so the order of arrival is fixed.
    await waitFor(() => fa.open() === 100, 5_000, 'the first flood to be held to its listener cap');
    const fb = await flood(b.proxy.host, b.proxy.port, 500);
    try {
      await waitFor(() => fb.open() === 50, 15_000, 'the second flood to be held to the proxy-wide cap');
      await sleep(300);
      expect(fa.open()).toBe(100);
      expect(fb.open()).toBe(50);
      expect(rig.airlock.runtime.proxy.clientConnections()).toBe(150);
      expect(fb.received.find((t) => t.startsWith('HTTP/1.1 503'))).toContain('the proxy holds its maximum of 150 client connections');
    } finally {
      fa.close();
    }
    await sleep(200);
    expect((await proxyGet(rig.proxy, 'http://good.test/room-again')).status).toBe(200);
    fb.close();
  });
});

describe('attack 11c: connections that never authenticate are closed after the auth deadline', () => {
  const AUTH_TIMEOUT_MS = 800;
  let rig: GuardedRig;
  beforeAll(async () => {
    rig = await startGuardedRig({ policy: policy(), limits: { authTimeoutMs: AUTH_TIMEOUT_MS } });
  });
  afterAll(() => rig?.close());

  const connectedAt = new Map<net.Socket, number>();
  async function connect(): Promise<net.Socket> {
    const t = performance.now();
    const socket = await connectTcp(rig.proxy.host, rig.proxy.port);
    connectedAt.set(socket, t);
    return socket;
  }

  /** ms from connecting until the peer closed `socket`, or null if it is still open after `waitMs`. */
  function closedWithin(socket: net.Socket, waitMs: number): Promise<number | null> {
    return new Promise((resolve) => {
      socket.on('error', () => {});
      socket.resume();
      const timer = setTimeout(() => resolve(null), waitMs);
      socket.once('close', () => {
        clearTimeout(timer);
        resolve(performance.now() - connectedAt.get(socket)!);
      });
    });
  }

  it('idle, half a head, or a 407 and then nothing: closed after the deadline; an authenticated keep-alive connection stays', async () => {
    const idle = await Promise.all(Array.from({ length: 50 }, () => connect()));
    const partial = await connect();
    partial.write('GET http://good.test/ HTTP/1.1\r\nHost: good.test\r\n');
    const unauthorised = await connect();
    const challenge = await exchange(unauthorised, 'GET http://good.test/no-auth HTTP/1.1\r\nHost: good.test\r\n\r\n', { untilResponse: true });
    expect(challenge.status).toBe(407);
    const authed = await connect();
    const served = await exchange(authed, `GET http://good.test/authed HTTP/1.1\r\nHost: good.test\r\nProxy-Authorization: ${rig.proxy.auth}\r\n\r\n`, { untilResponse: true });
    expect(served.status).toBe(200);
    // A tunnel is authenticated at its CONNECT: it stays too.
    const tunnel = await proxyConnect(rig.proxy, 'good.test:443');
    expect(tunnel.status).toBe(200);

    connectedAt.set(tunnel.socket, performance.now());
    const waitMs = AUTH_TIMEOUT_MS + 2_000;
    const [idleTimes, partialMs, unauthorisedMs, authedMs, tunnelMs] = await Promise.all([
      Promise.all(idle.map((s) => closedWithin(s, waitMs))),
      closedWithin(partial, waitMs),
      closedWithin(unauthorised, waitMs),
      closedWithin(authed, waitMs),
      closedWithin(tunnel.socket, waitMs),
    ]);
    for (const ms of [...idleTimes, partialMs, unauthorisedMs]) {
      expect(ms).not.toBeNull();
      // Measured from the client's connect, which starts a moment before the proxy's accept.
      expect(ms!).toBeGreaterThan(AUTH_TIMEOUT_MS - 50);
      expect(ms!).toBeLessThan(AUTH_TIMEOUT_MS + 1_000);
    }
    expect(authedMs).toBeNull();
    expect(tunnelMs).toBeNull();
    expect(rig.airlock.runtime.proxy.clientConnections()).toBe(2);
    authed.destroy();
    tunnel.socket.destroy();
  });
});
