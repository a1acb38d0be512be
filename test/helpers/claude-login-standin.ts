// Stand-ins for a Claude subscription login: the token endpoint (platform.claude.com/v1/oauth/token),
// which rotates the real pair on each refresh_token grant and refuses anything else, and the parts
// of api.anthropic.com Claude Code calls with a login (Messages, the profile), which answer 401 to
// anything but the current real access token. Both record what they saw, so a test can check
// that no placeholder ever reached them.
import { randomBytes } from 'node:crypto';
import type http from 'node:http';

export interface RealPair {
  accessToken: string;
  refreshToken: string;
}

export type TokenMode = 'ok' | 'invalid_grant' | 'error500' | 'garbage' | 'slow';

export function realAccess(): string {
  return `sk-ant-oat01-REAL${randomBytes(24).toString('hex')}`;
}

export function realRefresh(): string {
  return `sk-ant-ort01-REAL${randomBytes(24).toString('hex')}`;
}

export interface ClaudeTokenStandIn {
  readonly handler: (req: http.IncomingMessage, res: http.ServerResponse) => void;
  /** The pair currently valid (rotated on every successful refresh). */
  current: RealPair;
  /** Every grant received: its parsed body. */
  readonly grants: Array<Record<string, unknown>>;
  /** Every raw request body received. */
  readonly bodies: string[];
  mode: TokenMode;
  /** Seconds the issued access tokens live. */
  expiresIn: number;
  /** Every pair ever issued (for leak checks). */
  readonly issued: RealPair[];
}

export function claudeTokenStandIn(initial: RealPair): ClaudeTokenStandIn {
  const s: ClaudeTokenStandIn = {
    current: { ...initial },
    grants: [],
    bodies: [],
    mode: 'ok',
    expiresIn: 3600,
    issued: [{ ...initial }],
    handler: (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        s.bodies.push(text);
        let body: Record<string, unknown> = {};
        try {
          body = JSON.parse(text) as Record<string, unknown>;
        } catch {
          /* recorded as is */
        }
        s.grants.push(body);
        const json = (status: number, value: unknown) => {
          const out = JSON.stringify(value);
          res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(out) });
          res.end(out);
        };
        const path = new URL(req.url ?? '/', 'http://x').pathname;
        if (req.method !== 'POST' || path !== '/v1/oauth/token') return json(404, { error: 'not_found' });
        if (s.mode === 'slow') return; // never answers
        if (s.mode === 'error500') return json(500, { error: 'server_error' });
        if (s.mode === 'garbage') {
          res.writeHead(200, { 'Content-Type': 'text/html' });
          res.end('<html>gateway says hi</html>');
          return;
        }
        if (s.mode === 'invalid_grant' || body.grant_type !== 'refresh_token' || body.refresh_token !== s.current.refreshToken || typeof body.client_id !== 'string') {
          return json(400, { error: 'invalid_grant', error_description: 'Invalid refresh token' });
        }
        s.current = { accessToken: realAccess(), refreshToken: realRefresh() };
        s.issued.push({ ...s.current });
        json(200, {
          token_type: 'Bearer',
          access_token: s.current.accessToken,
          refresh_token: s.current.refreshToken,
          expires_in: s.expiresIn,
          scope: typeof body.scope === 'string' ? body.scope : 'user:inference user:profile',
          account: { uuid: '00000000-0000-4000-8000-000000000001', email_address: 'user@example.com' },
          organization: { uuid: '00000000-0000-4000-8000-000000000002' },
        });
      });
    },
  };
  return s;
}

function sse(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

export interface ClaudeApiStandIn {
  readonly handler: (req: http.IncomingMessage, res: http.ServerResponse) => void;
  /** Every request: path and the bearer it carried. */
  readonly seen: Array<{ method: string; path: string; bearer: string | undefined; beta: string | undefined; ok: boolean }>;
}

/** api.anthropic.com for a login: Messages (JSON or SSE) and the OAuth profile, for the current access token only. */
export function claudeApiStandIn(tokens: () => string, reply: string): ClaudeApiStandIn {
  const s: ClaudeApiStandIn = {
    seen: [],
    handler: (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const path = new URL(req.url ?? '/', 'http://x').pathname;
        const bearer = /^Bearer (.*)$/.exec(String(req.headers.authorization ?? ''))?.[1];
        const ok = bearer !== undefined && bearer === tokens();
        s.seen.push({ method: req.method ?? '', path, bearer, beta: req.headers['anthropic-beta'] as string | undefined, ok });
        const json = (status: number, value: unknown) => {
          const out = JSON.stringify(value);
          res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(out), 'request-id': 'req_standin' });
          res.end(out);
        };
        if (!ok) return json(401, { type: 'error', error: { type: 'authentication_error', message: 'OAuth token is invalid' } });
        if (req.method === 'GET' && path === '/api/oauth/profile') {
          return json(200, {
            account: { uuid: '00000000-0000-4000-8000-000000000001', email: 'user@example.com', display_name: 'Test User', has_claude_max: true, has_claude_pro: false },
            organization: { uuid: '00000000-0000-4000-8000-000000000002', organization_type: 'claude_max', rate_limit_tier: 'default_claude_max_20x', billing_type: 'stripe_subscription' },
          });
        }
        if (req.method !== 'POST' || path !== '/v1/messages') return json(404, { type: 'error', error: { type: 'not_found_error', message: `${req.method} ${path}` } });
        let body: { stream?: boolean; model?: string } = {};
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          /* as is */
        }
        const model = body.model ?? 'claude-test';
        const id = `msg_standin${randomBytes(6).toString('hex')}`;
        const usage = { input_tokens: 12, output_tokens: 7, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 };
        if (!body.stream) {
          return json(200, { id, type: 'message', role: 'assistant', model, content: [{ type: 'text', text: reply }], stop_reason: 'end_turn', stop_sequence: null, usage });
        }
        res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', 'request-id': 'req_standin' });
        res.write(sse('message_start', { type: 'message_start', message: { id, type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: { ...usage, output_tokens: 1 } } }));
        res.write(sse('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }));
        res.write(sse('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: reply } }));
        res.write(sse('content_block_stop', { type: 'content_block_stop', index: 0 }));
        res.write(sse('message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 7 } }));
        res.write(sse('message_stop', { type: 'message_stop' }));
        res.end();
      });
    },
  };
  return s;
}

/** A Claude Code login store (`.credentials.json`) holding `pair`. */
export function claudeStore(pair: RealPair, expiresAt: number): string {
  return JSON.stringify({
    claudeAiOauth: {
      accessToken: pair.accessToken,
      refreshToken: pair.refreshToken,
      expiresAt,
      scopes: ['user:inference', 'user:profile', 'user:sessions:claude_code'],
      subscriptionType: 'max',
      rateLimitTier: 'default_claude_max_20x',
    },
  });
}
