// A text/event-stream read event by event (the WHATWG EventSource rules: lines end with CRLF, LF
// or CR; an empty line ends an event; "field: value" with one space dropped), each whole event
// handed to a judge that passes it, rewrites its data or drops it. Only the event being read is
// held, at most maxEventBytes; a longer one is an error (the stream is cut off, not passed on).
// Framing and judging are pure: no sockets, so the reader is tested and fuzzed directly.

export interface SseEvent {
  /** The event's lines as read, without their line ends. */
  readonly lines: readonly string[];
  /** The event type ("message" when none is given). */
  readonly type: string;
  /** The data lines joined with "\n", or null when the event has no data field. */
  readonly data: string | null;
}

/** What becomes of an event: passed as read, sent with new data, or dropped. */
export type SseVerdict = { readonly pass: true } | { readonly data: string } | { readonly drop: string };

const LINE_END = /[\r\n]/g;

export class SseTooLarge extends Error {
  constructor(limit: number) {
    super(`an event-stream event is longer than ${limit} bytes`);
  }
}

export class SseReader {
  private readonly decoder = new TextDecoder('utf-8');
  private line = '';
  private lines: string[] = [];
  private eventBytes = 0;
  /** The last chunk ended in CR: a LF that starts the next one belongs to that line end. */
  private afterCr = false;

  constructor(
    private readonly judge: (event: SseEvent) => SseVerdict,
    private readonly maxEventBytes: number,
  ) {}

  /** Reads a chunk; returns what to send on (possibly empty). Throws SseTooLarge. */
  push(chunk: Uint8Array): string {
    return this.read(this.decoder.decode(chunk, { stream: true }));
  }

  /** The end of the stream: an event not ended by an empty line is dropped, as clients drop it. */
  end(): string {
    const out = this.read(this.decoder.decode());
    this.line = '';
    this.lines = [];
    return out;
  }

  private read(text: string): string {
    let out = '';
    let start = 0;
    let i = 0;
    if (this.afterCr && text.startsWith('\n')) {
      start = i = 1;
    }
    this.afterCr = false;
    for (; i < text.length; i++) {
      LINE_END.lastIndex = i;
      if (!LINE_END.test(text)) break;
      i = LINE_END.lastIndex - 1;
      const c = text.charCodeAt(i);
      this.line += text.slice(start, i);
      if (c === 0x0d) {
        if (i + 1 === text.length) this.afterCr = true;
        else if (text.charCodeAt(i + 1) === 0x0a) i++;
      }
      start = i + 1;
      out += this.endLine();
    }
    this.line += text.slice(start);
    if (this.eventBytes + this.line.length > this.maxEventBytes) throw new SseTooLarge(this.maxEventBytes);
    return out;
  }

  private endLine(): string {
    const line = this.line;
    this.line = '';
    if (line !== '') {
      this.lines.push(line);
      this.eventBytes += line.length + 1;
      if (this.eventBytes > this.maxEventBytes) throw new SseTooLarge(this.maxEventBytes);
      return '';
    }
    const lines = this.lines;
    this.lines = [];
    this.eventBytes = 0;
    if (lines.length === 0) return '\n';
    return dispatch(lines, this.judge);
  }
}

function fieldOf(line: string): [string, string] {
  const colon = line.indexOf(':');
  if (colon === -1) return [line, ''];
  const value = line.slice(colon + 1);
  return [line.slice(0, colon), value.startsWith(' ') ? value.slice(1) : value];
}

function dispatch(lines: string[], judge: (event: SseEvent) => SseVerdict): string {
  let type = 'message';
  let data: string[] | null = null;
  for (const line of lines) {
    const [field, value] = fieldOf(line);
    if (field === 'event') type = value;
    else if (field === 'data') (data ??= []).push(value);
  }
  const verdict = judge({ lines, type, data: data === null ? null : data.join('\n') });
  if ('pass' in verdict) return lines.join('\n') + '\n\n';
  if ('drop' in verdict) return '';
  // The new data in place of the old data lines; the other fields (id, event, retry) as they were.
  const out: string[] = [];
  let placed = false;
  for (const line of lines) {
    if (fieldOf(line)[0] !== 'data') out.push(line);
    else if (!placed) {
      placed = true;
      for (const piece of verdict.data.split(/\r\n|\r|\n/)) out.push(`data: ${piece}`);
    }
  }
  return out.join('\n') + '\n\n';
}
