// Reading a secret back from a bound WebSocket host through what the message scrubber does not
// cover: close reasons, a secret split over more than two messages, and a secret that rotated
// just before the upgrade.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import type { Duplex } from 'node:stream';
import type http from 'node:http';
import WebSocket, { WebSocketServer } from 'ws';
import { createTestPki, rmTmp, startAirlock, startHttpsUpstream } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import { TunnelAgent } from '../helpers/clients.js';
import { secretLeaks } from '../helpers/secret-leaks.js';
import { SessionBroker } from '../../src/credentials/session-broker.js';
import type { SecretHandle } from '../../src/credentials/session-broker.js';

const SECRET = 'ghs_WsRedTeamSecret0123456789abcdefXYZ';
const ROTATED = 'ghs_WsRotatedSecretAfterTtl987654321QRS';
const PLACEHOLDER = 'ghp_airlockWsProbePlaceholder0000000000';

const POLICY = `version: 1
name: ws-red
allow:
  - host: api.github.com
credentials:
  - name: github
    env: [GH_TOKEN]
    placeholder: ${PLACEHOLDER}
    secret: { command: ["/bin/true"] }
    hosts: [api.github.com]
`;

/** A command secret whose value changes when its TTL runs out (as short-lived tokens do). */
class RotatingSecret implements SecretHandle {
  value = SECRET;
  private readonly seen = new Set<string>();
  async current(): Promise<string> {
    this.seen.add(this.value);
    return this.value;
  }
  known(): readonly string[] {
    return [...this.seen];
  }
}

describe('WebSocket read-back beyond messages', () => {
  let pki: TestPki;
  let bound: TestUpstream;
  let airlock: AirlockHandle;
  let ca: string;
  const secret = new RotatingSecret();

  beforeAll(async () => {
    pki = await createTestPki();
    const wss = new WebSocketServer({ noServer: true });
    wss.on('connection', (socket, req) => {
      const token = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
      const url = req.url ?? '';
      if (url === '/close-reason') {
        // A server refusing a token after the handshake, saying which one (as many do).
        socket.close(4001, `invalid token ${token}`);
      } else if (url === '/three') {
        // Streams its echo in small frames, all sent at once.
        const text = `token: ${token} end`;
        for (let i = 0; i < text.length; i += 12) socket.send(text.slice(i, i + 12));
      } else {
        socket.send(`token: ${token} end`);
      }
    });
    const onUpgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
    };
    bound = await startHttpsUpstream({ pki, names: ['api.github.com'], onUpgrade });
    airlock = await startAirlock({
      policy: POLICY,
      resolve: { 'api.github.com:443': bound.port },
      upstreamCa: [pki.caPem],
      credentials: async (policy) => new SessionBroker(policy.credentials, new Map([['github', secret]])),
    });
    ca = readFileSync(airlock.bundlePath, 'utf8');
  });

  afterAll(async () => {
    await airlock?.close();
    await bound?.close();
    rmTmp(pki?.dir);
  });

  function open(path: string) {
    const agent = new TunnelAgent({ proxyPort: airlock.port, proxyAuthorization: airlock.proxyAuthorization, ca });
    return new WebSocket(`wss://api.github.com${path}`, [], { agent, headers: { Authorization: `Bearer ${PLACEHOLDER}` }, perMessageDeflate: false });
  }

  /** Everything the session gets until the socket closes: messages, then the close reason. */
  function everything(ws: WebSocket): Promise<{ messages: string[]; reason: string }> {
    return new Promise((resolve, reject) => {
      const messages: string[] = [];
      ws.on('message', (data) => messages.push(String(data)));
      ws.once('error', reject);
      ws.once('close', (_code, reason) => resolve({ messages, reason: String(reason) }));
      setTimeout(() => ws.close(), 1500);
    });
  }

  it('a close frame reason from a bound host is scrubbed like a message', async () => {
    secret.value = SECRET;
    const got = await everything(open('/close-reason'));
    expect(bound.requests.at(-1)?.headers.authorization).toBe(`Bearer ${SECRET}`);
    expect(secretLeaks(got.reason, SECRET, 8)).toEqual([]);
  });

  it('a secret split over three messages that arrive together does not get through', async () => {
    secret.value = SECRET;
    const got = await everything(open('/three'));
    expect(got.messages.length).toBeGreaterThan(3);
    expect(secretLeaks(got.messages.join(''), SECRET, 8)).toEqual([]);
  });

  it('a secret that rotated just before the upgrade is scrubbed from that connection', async () => {
    // First use: the broker knows SECRET. Then the token is renewed (command TTL expired).
    secret.value = SECRET;
    await everything(open('/once'));
    secret.value = ROTATED;
    const got = await everything(open('/once'));
    expect(bound.requests.at(-1)?.headers.authorization).toBe(`Bearer ${ROTATED}`);
    expect(secretLeaks(got.messages.join(''), ROTATED, 8)).toEqual([]);
  });
});
