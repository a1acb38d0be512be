// What an MCP server sends back under an mcp: rule, on its way to the client: every JSON-RPC
// message in it is read, and a tools/list result keeps only the rule's tools (filterToolsResult).
// A text/event-stream (a POST's streamed answer, the GET stream of streamable HTTP, the /sse
// stream of the older transport) is read event by event as it arrives, holding one event at
// most; any other body is one JSON value, held whole up to MAX_MCP_MESSAGE_BYTES. Which body is
// which is judged by its content, not only by its Content-Type: a body that parses as JSON is
// filtered whatever it says it is. What cannot be read where it must be (an event that is not
// strict JSON, a JSON body that is not, a compressed body) is dropped or cut off: fail closed.
import { filterToolsResult, parseStrictJson, utf8Text, type JsonValue } from '../../policy/index.js';
import type { BodySink } from '../http1/types.js';
import { SseReader, SseTooLarge, type SseEvent, type SseVerdict } from './sse.js';

/** One JSON-RPC body or event at most; far above any real tools/list. */
export const MAX_MCP_MESSAGE_BYTES = 4 * 1024 * 1024;

export interface McpResponseOptions {
  readonly tools: readonly string[];
  /** Response headers as they go to the client; Content-Length is dropped when the body may change. */
  readonly headers: Record<string, string | string[]>;
  /** What was filtered or dropped, for the audit line. */
  note(what: string): void;
  /** The body cannot be passed on whole: cut the response off. */
  abort(why: string): void;
}

function headerValue(v: string | string[] | undefined): string {
  return (Array.isArray(v) ? v.join(',') : (v ?? '')).trim().toLowerCase();
}

/** Why this response cannot be checked at all (before its head is sent), or null. */
export function uncheckableResponse(headers: Record<string, string | string[]>): string | null {
  const encoding = headerValue(headers['content-encoding']);
  if (encoding !== '' && encoding !== 'identity') return `the MCP server answered with Content-Encoding ${JSON.stringify(encoding.slice(0, 40))}, which Airlock cannot check`;
  return null;
}

/** Whether a response to a request under an mcp: rule is a text/event-stream. */
function isEventStream(headers: Record<string, string | string[]>): boolean {
  return headerValue(headers['content-type']).split(';')[0]!.trim() === 'text/event-stream';
}

/** A sink that filters the body into `next`; `opts.headers` loses its Content-Length. */
export function mcpResponseSink(next: BodySink, opts: McpResponseOptions): BodySink {
  delete opts.headers['content-length'];
  const tally = { hidden: 0, total: 0, lists: 0, dropped: 0 };
  const report = () => {
    const parts: string[] = [];
    if (tally.lists > 0) parts.push(`tools/list hid ${tally.hidden} of ${tally.total} tools`);
    if (tally.dropped > 0) parts.push(`dropped ${tally.dropped} unreadable message${tally.dropped === 1 ? '' : 's'}`);
    if (parts.length > 0) opts.note(parts.join(', '));
  };
  const filtered = (value: JsonValue): string | null => {
    const f = filterToolsResult(value, opts.tools);
    if (!f) return null;
    tally.lists++;
    tally.hidden += f.hidden;
    tally.total += f.total;
    report();
    return JSON.stringify(f.message);
  };
  if (isEventStream(opts.headers)) return eventStreamSink(next, opts, filtered, () => {
    tally.dropped++;
    report();
  });
  return wholeJsonSink(next, opts, filtered);
}

/**
 * What becomes of one event: `filtered` rewrites a JSON-RPC value (null: unchanged), `dropped`
 * counts an event whose data is not strict JSON.
 */
export function mcpEventJudge(filtered: (v: JsonValue) => string | null, dropped: () => void): (event: SseEvent) => SseVerdict {
  return (event) => {
    // The older transport's first event names the URL to POST to: not JSON-RPC.
    if (event.data === null || event.data === '' || event.type === 'endpoint') return { pass: true };
    let value: JsonValue;
    try {
      value = parseStrictJson(event.data);
    } catch {
      dropped();
      return { drop: 'not strict JSON' };
    }
    const data = filtered(value);
    return data === null ? { pass: true } : { data };
  };
}

function eventStreamSink(next: BodySink, opts: McpResponseOptions, filtered: (v: JsonValue) => string | null, dropped: () => void): BodySink {
  const judge = mcpEventJudge(filtered, dropped);
  const reader = new SseReader(judge, MAX_MCP_MESSAGE_BYTES);
  let broken = false;
  const take = (chunk: Buffer | undefined, last: boolean): string | null => {
    if (broken) return null;
    try {
      return (chunk ? reader.push(chunk) : '') + (last ? reader.end() : '');
    } catch (err) {
      broken = true;
      opts.abort(err instanceof SseTooLarge ? err.message : 'the event stream could not be read');
      return null;
    }
  };
  return {
    write(chunk) {
      const out = take(chunk, false);
      if (out === null) return true;
      return out === '' ? true : next.write(Buffer.from(out));
    },
    end(chunk) {
      const out = take(chunk, true);
      if (out === null) return;
      next.end(out === '' ? undefined : Buffer.from(out));
    },
    cork: () => next.cork(),
    uncork: () => next.uncork(),
    get writableLength() {
      return next.writableLength ?? 0;
    },
    once: (event, listener) => next.once(event, listener),
    on: (event, listener) => next.on(event, listener),
  };
}

function wholeJsonSink(next: BodySink, opts: McpResponseOptions, filtered: (v: JsonValue) => string | null): BodySink {
  const chunks: Buffer[] = [];
  let size = 0;
  let broken = false;
  const declaredJson = headerValue(opts.headers['content-type']).split(';')[0]!.trim().endsWith('json');
  return {
    write(chunk) {
      if (broken) return true;
      size += chunk.length;
      if (size > MAX_MCP_MESSAGE_BYTES) {
        broken = true;
        chunks.length = 0;
        opts.abort(`an MCP server's answer is longer than ${MAX_MCP_MESSAGE_BYTES} bytes`);
        return true;
      }
      chunks.push(chunk);
      return true;
    },
    end(chunk) {
      if (broken) return;
      if (chunk) chunks.push(chunk);
      const body = Buffer.concat(chunks);
      if (body.length === 0) {
        next.end();
        return;
      }
      const text = utf8Text(body);
      let value: JsonValue | undefined;
      try {
        if (text !== null) value = parseStrictJson(text);
      } catch {
        value = undefined;
      }
      if (value === undefined) {
        // Declared JSON that does not read as strict JSON is refused; any other body (an error
        // page) is no JSON-RPC message to a client, and goes as it came.
        if (declaredJson) {
          broken = true;
          opts.abort('an MCP server answered with a JSON body that is not strict JSON');
          return;
        }
        // An event stream under another name is read as one: a client may not look at the name.
        if (text !== null && /^data:/m.test(text)) {
          const sse = eventStreamSink(wholeInto(next), opts, filtered, () => {});
          sse.end(body);
          return;
        }
        next.end(body);
        return;
      }
      const out = filtered(value);
      next.end(out === null ? body : Buffer.from(out));
    },
    cork: () => next.cork(),
    uncork: () => next.uncork(),
    once: (event, listener) => next.once(event, listener),
    on: (event, listener) => next.on(event, listener),
  };
}

/** A sink that hands its whole output to `next` in one end() (for a body already held whole). */
function wholeInto(next: BodySink): BodySink {
  const parts: Buffer[] = [];
  return {
    write(chunk) {
      parts.push(chunk);
      return true;
    },
    end(chunk) {
      if (chunk) parts.push(chunk);
      next.end(Buffer.concat(parts));
    },
    cork() {},
    uncork() {},
    once() {},
    on() {},
  };
}
