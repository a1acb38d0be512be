// The upstream response parser and the request framer without sockets: bytes in, events (or bytes)
// out, for every framing, every way a response may be cut into reads, and the malformed responses
// that must be refused rather than guessed at.
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { parseChunkSize, parseResponseHead, ResponseParser } from '../../../src/proxy/http1/response-parser.js';
import type { ParsedResponseHead, ResponseEvents } from '../../../src/proxy/http1/response-parser.js';
import { chunkPrefix, requestHead } from '../../../src/proxy/http1/request-framer.js';
import type { UpstreamCall } from '../../../src/proxy/http1/types.js';

interface Recorded {
  head?: ParsedResponseHead;
  body: string;
  ends: { last: string | null; extra: boolean }[];
  errors: string[];
}

/** A parser whose events are recorded; `onHead` may act on the head (stop the parser, say). */
function recorder(onHead?: (parser: ResponseParser) => void): { parser: ResponseParser; seen: Recorded } {
  const seen: Recorded = { body: '', ends: [], errors: [] };
  const events: ResponseEvents = {
    head: (head) => {
      seen.head = head;
      onHead?.(parser);
    },
    body: (piece) => (seen.body += piece.toString('latin1')),
    end: (last, extra) => {
      if (last) seen.body += last.toString('latin1');
      seen.ends.push({ last: last ? last.toString('latin1') : null, extra });
    },
    error: (message) => seen.errors.push(message),
  };
  const parser = new ResponseParser(events);
  return { parser, seen };
}

/** Feeds `text` in pieces of `size` bytes (all at once when 0). */
function parse(text: string, { method = 'GET', size = 0 } = {}): Recorded & { parser: ResponseParser } {
  const { parser, seen } = recorder();
  parser.start(method);
  const bytes = Buffer.from(text, 'latin1');
  const step = size || bytes.length || 1;
  for (let at = 0; at < bytes.length; at += step) parser.feed(bytes.subarray(at, at + step));
  return { ...seen, parser };
}

const CHUNKED = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Trailer: dropped\r\n\r\n';

describe('ResponseParser', () => {
  it.each([0, 1, 2, 7])('frames a Content-Length body fed in pieces of %i bytes', (size) => {
    const r = parse('HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-A: 1\r\n\r\nhello world', { size });
    expect(r.head).toMatchObject({ statusCode: 200, headers: { 'content-length': '11', 'x-a': '1' }, keepAlive: true });
    expect(r.body).toBe('hello world');
    expect(r.ends).toHaveLength(1);
    expect(r.ends[0]!.extra).toBe(false);
    expect(r.errors).toEqual([]);
  });

  it.each([0, 1, 3])('decodes chunked bodies with extensions and drops trailers (pieces of %i bytes)', (size) => {
    const r = parse(CHUNKED, { size });
    expect(r.body).toBe('Wikipedia');
    expect(r.ends).toEqual([{ last: null, extra: false }]);
    expect(r.head!.headers['x-trailer']).toBeUndefined();
  });

  it('reports bytes past the end of a response (the connection is out of step)', () => {
    expect(parse('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA').ends).toEqual([{ last: 'ok', extra: true }]);
    expect(parse(CHUNKED + 'HTTP/1.1').ends).toEqual([{ last: null, extra: true }]);
    expect(parse('HTTP/1.1 204 No Content\r\n\r\nstray').ends).toEqual([{ last: null, extra: true }]);
  });

  it('skips 1xx heads and reports the final one', () => {
    const r = parse('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n');
    expect(r.head!.statusCode).toBe(201);
    expect(r.ends).toHaveLength(1);
  });

  it('reads a body without length until the connection ends, and never keeps that connection', () => {
    const r = parse('HTTP/1.1 200 OK\r\n\r\nall of it');
    expect(r.head!.keepAlive).toBe(false);
    expect(r.ends).toEqual([]);
    expect(r.parser.eof()).toBe(true);
    expect(r.body).toBe('all of it');
    expect(r.ends).toHaveLength(1);
  });

  it('an end of connection mid-body is not a complete response', () => {
    const r = parse('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf');
    expect(r.parser.eof()).toBe(false);
    expect(r.ends).toEqual([]);
  });

  it('HEAD, 204 and 304 have no body, whatever they announce; a 204/304 that announces one is flagged', () => {
    expect(parse('HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n', { method: 'HEAD' }).ends).toEqual([{ last: null, extra: false }]);
    const noContent = parse('HTTP/1.1 204 No Content\r\n\r\n');
    expect(noContent.ends).toHaveLength(1);
    expect(noContent.head!.strayBody).toBe(false);
    const notModified = parse('HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n');
    expect(notModified.ends).toHaveLength(1);
    expect(notModified.head!.strayBody).toBe(true);
  });

  it('reads what the head says about the connection', () => {
    expect(parse('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n').head!.keepAlive).toBe(false);
    expect(parse('HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n').head!.keepAlive).toBe(false);
    expect(parse('HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n').head!.keepAlive).toBe(true);
    expect(parse('HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n').head!.keepAliveSeconds).toBe(5);
    expect(parse('HTTP/1.1 200 OK\r\nSet-Cookie: a\r\nSet-Cookie: b\r\nContent-Length: 0\r\n\r\n').head!.headers['set-cookie']).toEqual(['a', 'b']);
  });

  const malformed: Record<string, [string, RegExp]> = {
    'both Transfer-Encoding and Content-Length': ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n', /both/],
    'two different Content-Lengths': ['HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd', /Content-Length/],
    'a non-numeric Content-Length': ['HTTP/1.1 200 OK\r\nContent-Length: 3x\r\n\r\nabc', /Content-Length/],
    'an obs-folded header': ['HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n', /header line/],
    'a space before the colon': ['HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n', /header line/],
    'a bad status line': ['HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n', /status line/],
    'a malformed chunk size': ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n', /chunk size/],
    'a chunk not followed by CRLF': ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n', /CRLF/],
    'a coding other than chunked': ['HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n', /Transfer-Encoding: gzip/],
    'a switch of protocols': ['HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n', /switched protocols/],
    'a chunk size line over 4 KiB': [`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;${'x'.repeat(5000)}\r\na\r\n0\r\n\r\n`, /chunk size/],
    'a head over 64 KiB': [`HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(70 * 1024)}\r\n\r\n`, /too large/],
  };
  for (const [name, [text, why]] of Object.entries(malformed)) {
    it(`refuses a response with ${name}, whole or byte by byte, and reports nothing after`, () => {
      for (const size of [0, 1]) {
        const r = parse(text, { size });
        expect(r.errors).toHaveLength(1);
        expect(r.errors[0]).toMatch(why);
        expect(r.ends).toEqual([]);
      }
    });
  }

  it('a handler that stops the parser on the head gets nothing more', () => {
    const { parser, seen } = recorder((p) => p.stop());
    parser.start('GET');
    parser.feed(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello'));
    parser.feed(Buffer.from('more'));
    expect(seen.head!.statusCode).toBe(200);
    expect(seen.body).toBe('');
    expect(seen.ends).toEqual([]);
  });

  it('says whether it still waits for the head (which timeout applies)', () => {
    const { parser } = recorder();
    parser.start('GET');
    expect(parser.awaitingHead).toBe(true);
    parser.feed(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhe'));
    expect(parser.awaitingHead).toBe(false);
  });
});

describe('parseResponseHead and parseChunkSize', () => {
  it('says how the body is framed', () => {
    expect(parseResponseHead('HTTP/1.1 200 OK\r\nContent-Length: 3', 'GET')).toMatchObject({ framing: 'length', length: 3 });
    expect(parseResponseHead('HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked', 'GET')).toMatchObject({ framing: 'chunked' });
    expect(parseResponseHead('HTTP/1.1 200 OK', 'GET')).toMatchObject({ framing: 'close', keepAlive: false });
    expect(parseResponseHead('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked', 'HEAD')).toMatchObject({ framing: 'none' });
    expect(parseResponseHead('HTTP/1.1 100 Continue', 'GET')).toBeNull();
  });

  it('reads hex sizes with extensions and refuses anything else', () => {
    expect(parseChunkSize('1a;name=value')).toBe(26);
    expect(parseChunkSize(' 0 ')).toBe(0);
    for (const bad of ['', 'x', '-1', '0x10', '1234567890abc']) expect(parseChunkSize(bad)).toBe(-1);
  });
});

describe('request framer', () => {
  const call = (over: Partial<UpstreamCall> = {}): UpstreamCall => ({ secure: true, host: 'api.example.com', port: 443, method: 'GET', path: '/x', headers: [], body: null, ...over });

  it('writes the head, adding Host (with a port when not the default) and chunked for a body without length', () => {
    expect(requestHead(call({ headers: ['Accept', '*/*'] }))).toEqual({ head: 'GET /x HTTP/1.1\r\nAccept: */*\r\nhost: api.example.com\r\n\r\n', chunked: false });
    expect(requestHead(call({ host: '::1', port: 8443, secure: true })).head).toContain('host: [::1]:8443\r\n');
    const body = Readable.from([]);
    expect(requestHead(call({ method: 'POST', body }))).toMatchObject({ chunked: true });
    expect(requestHead(call({ method: 'POST', body })).head).toContain('transfer-encoding: chunked\r\n');
    expect(requestHead(call({ method: 'POST', body, headers: ['Content-Length', '3'] }))).toMatchObject({ chunked: false });
  });

  it('refuses to write a head that CR, LF or a bad name would split', () => {
    expect(() => requestHead(call({ headers: ['X-Token', 'a\r\nX-Injected: 1'] }))).toThrow(expect.objectContaining({ code: 'INVALID_HEADER' }));
    expect(() => requestHead(call({ headers: ['Bad Name', 'v'] }))).toThrow(expect.objectContaining({ code: 'INVALID_HEADER' }));
    expect(() => requestHead(call({ path: '/x y' }))).toThrow(expect.objectContaining({ code: 'INVALID_REQUEST' }));
    expect(() => requestHead(call({ method: 'GE T' }))).toThrow(expect.objectContaining({ code: 'INVALID_REQUEST' }));
  });

  it('prefixes a chunk with its size in hex', () => {
    expect(chunkPrefix(26)).toBe('1a\r\n');
  });
});
