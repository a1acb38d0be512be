// The denial inbox as data: grouping audit lines, and agents' access requests, which come from a
// hostile session and must be stored as bounded plain text or refused.
import { describe, expect, it } from 'vitest';
import { Inbox, INBOX_LIMITS, plainText } from '../../src/sessions/inbox.js';
import type { AuditEntry } from '../../src/audit/entry.js';

const live = new Set(['s-one', 's-two']);
const inbox = () => new Inbox({ sessionExists: (id) => live.has(id) });

function denial(over: Partial<AuditEntry> = {}): AuditEntry {
  return {
    session: 's-one',
    id: 'x',
    kind: 'request',
    method: 'GET',
    scheme: 'https',
    host: 'api.example.com',
    port: 443,
    path: '/v2/items?token=redacted',
    status: 403,
    action: 'deny',
    policy_version: 'abcdefabcdef',
    rule: 'allow[0] api.example.com',
    reason: 'path_not_allowed',
    credentials: [],
    bytes_up: 0,
    bytes_down: 0,
    duration_ms: 1,
    ...over,
  };
}

describe('Inbox from audit lines', () => {
  it('groups refusals by session, target, method and path, counting them with first and last seen', () => {
    const box = inbox();
    box.noteAudit(denial(), '2026-01-01T00:00:00.000Z');
    box.noteAudit(denial({ path: '/v2/items?token=other' }), '2026-01-01T00:00:05.000Z');
    box.noteAudit(denial({ method: 'POST' }), '2026-01-01T00:00:06.000Z');
    box.noteAudit(denial({ session: 's-two' }), '2026-01-01T00:00:07.000Z');
    box.noteAudit(denial({ kind: 'tunnel', method: 'CONNECT', path: '', reason: 'no_rule', host: 'new.example' }), '2026-01-01T00:00:08.000Z');
    const items = box.list();
    expect(items.map((i) => [i.session, i.method, i.host, i.path, i.count])).toEqual([
      ['s-one', null, 'new.example', null, 1],
      ['s-two', 'GET', 'api.example.com', '/v2/items', 1],
      ['s-one', 'POST', 'api.example.com', '/v2/items', 1],
      ['s-one', 'GET', 'api.example.com', '/v2/items', 2],
    ]);
    expect(items[3]).toMatchObject({ firstSeen: '2026-01-01T00:00:00.000Z', lastSeen: '2026-01-01T00:00:05.000Z', reason: 'path_not_allowed', policyVersion: 'abcdefabcdef', state: 'open' });
  });

  it('keeps only refusals a rule could lift', () => {
    const box = inbox();
    for (const reason of ['credential_misuse', 'rate_limited', 'destination_blocked', 'host_mismatch', 'upstream_error', 'allowed']) box.noteAudit(denial({ reason }));
    box.noteAudit(denial({ action: 'allow', reason: 'allowed' }));
    expect(box.list()).toEqual([]);
    box.noteAudit(denial({ action: 'would_deny', reason: 'no_rule' }));
    expect(box.list()).toHaveLength(1);
  });

  it('holds a bounded number of items per session: a flood from one session leaves the others alone', () => {
    const box = inbox();
    box.noteAudit(denial({ session: 's-two', path: '/keep' }));
    for (let i = 0; i < INBOX_LIMITS.itemsPerSession * 5; i++) box.noteAudit(denial({ path: `/flood/${i}` }));
    expect(box.list({ session: 's-one' })).toHaveLength(INBOX_LIMITS.itemsPerSession);
    expect(box.list({ session: 's-two' }).map((i) => i.path)).toEqual(['/keep']);
  });
});

describe('access requests from a session', () => {
  it('stores markup, control, bidi and zero-width characters and a huge reason as bounded plain text', () => {
    const box = inbox();
    const reason = `<script>alert(1)</script>\u001b[31mred\u001b[0m\r\nnext line\u202eevil\u2066x\u2069\u200bzero\u0000nul ${'A'.repeat(100_000)}`;
    const item = box.requestAccess('s-one', { host: 'Docs.Example.com', method: 'post', path: '/v1/search?q=secret', reason });
    expect(item).toMatchObject({ kind: 'requested', host: 'docs.example.com', method: 'POST', path: '/v1/search', reason: 'access_request', state: 'open' });
    expect(item.note!.startsWith('<script>alert(1)</script> [31mred [0m next line evil x zero nul AAAA')).toBe(true);
    expect([...item.note!]).toHaveLength(INBOX_LIMITS.noteChars);
    expect(item.note).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2066-\u2069]/);
    // Stored as text: escaping markup is the page's job, and it gets the characters as they are.
    expect(box.get(item.id)!.note).toBe(item.note);
  });

  it('refuses hosts and paths no rule could name, and fields of the wrong type, with a message for the agent', () => {
    const box = inbox();
    const bad: [unknown, string][] = [
      [{ host: '<img src=x onerror=alert(1)>' }, 'host:'],
      [{ host: 'a.example\u202ecom' }, 'host:'],
      [{ host: 'x'.repeat(300) }, 'host:'],
      [{ host: 42 }, 'host:'],
      [{ host: 'a.example', port: 0 }, 'port:'],
      [{ host: 'a.example', port: '443' }, 'port:'],
      [{ host: 'a.example', method: 'GET /x' }, 'method:'],
      [{ host: 'a.example', path: 'no-slash' }, 'path:'],
      [{ host: 'a.example', path: '/a b' }, 'path:'],
      [{ host: 'a.example', path: '/a\u0000b' }, 'path:'],
      [{ host: 'a.example', path: `/${'a'.repeat(5000)}` }, 'path:'],
      [{ host: 'a.example', reason: { toString: 'x' } }, 'reason:'],
      [null, 'expected an object'],
    ];
    for (const [input, message] of bad) expect(() => box.requestAccess('s-one', input as never), JSON.stringify(input)).toThrow(message);
    expect(() => box.requestAccess('s-gone', { host: 'a.example' })).toThrow('no such session');
    expect(box.list()).toEqual([]);
  });

  it('counts a repeated request instead of adding items, and the flood limit holds for requests too', () => {
    const box = inbox();
    box.requestAccess('s-one', { host: 'a.example', reason: 'first' });
    const again = box.requestAccess('s-one', { host: 'a.example', reason: 'second' });
    expect(again).toMatchObject({ count: 2, note: 'second', method: 'GET', path: '/', port: 443 });
    for (let i = 0; i < INBOX_LIMITS.itemsPerSession * 2; i++) box.requestAccess('s-one', { host: `h${i}.example` });
    expect(box.list({ session: 's-one' })).toHaveLength(INBOX_LIMITS.itemsPerSession);
  });
});

describe('plainText', () => {
  it('replaces lone surrogates and cuts on characters, not code units', () => {
    expect(plainText('a\ud800b', 10)).toBe('a\ufffdb');
    expect(plainText('😀😀😀', 2)).toBe('😀…');
  });
});
