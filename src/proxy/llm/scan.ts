// Reading a few fields out of JSON and server-sent events as they stream past, in bounded memory.
//
// The body of an LLM answer is not kept: a JSON scanner walks it byte by byte and keeps only the
// key path it is at (a few short keys), a wanted value while it is read (capped) and what it
// found. Nothing the upstream sends can make it allocate more: keys past MAX_KEY are not kept,
// nesting past MAX_DEPTH ends the scan, a wanted string past MAX_STRING or a number past
// MAX_NUMBER is dropped. It does not validate JSON; broken input yields nothing, never a throw.
// SSE events are split on line ends without keeping a line: each event's data lines are fed to
// a scanner of their own, as they arrive.

/** Nesting deeper than this ends the scan of that document (usage fields sit at depth 2-4). */
const MAX_DEPTH = 64;
/** Longer keys are kept as a key that matches nothing. */
const MAX_KEY = 64;
/** A wanted string value longer than this is dropped. */
const MAX_STRING = 256;
/** A wanted number with more characters than this is dropped. */
const MAX_NUMBER = 24;
/** Keys of paths deeper than this are not tracked (no wanted path is deeper). */
const MAX_PATH_DEPTH = 6;

export type FieldSink = (path: string, value: string | number) => void;

const enum State {
  Between,
  String,
  Literal,
  Dead,
}

const enum Kind {
  Object = 1,
  Array = 2,
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * A streaming JSON scanner that reports the values at `wanted` paths ("usage.input_tokens";
 * array elements are not reported). Strings come as text, numbers only when they are
 * non-negative whole numbers up to 12 digits; anything else at a wanted path is ignored.
 */
export class JsonFields {
  private state = State.Between;
  private depth = 0;
  private readonly kinds = new Uint8Array(MAX_DEPTH + 1);
  /** Path prefix at each depth, or null inside an array or past MAX_PATH_DEPTH. */
  private readonly prefixes: Array<string | null> = [''];
  private expectKey = false;
  /** What the current string or literal is: a key, a wanted value, or skipped. */
  private capture: 'key' | 'value' | 'skip' = 'skip';
  private escaped = false;
  private buf = Buffer.allocUnsafe(MAX_STRING);
  private len = 0;
  private overflow = false;
  /** The wanted path of the value being read. */
  private valuePath = '';

  constructor(
    private readonly wanted: ReadonlySet<string>,
    private readonly sink: FieldSink,
  ) {}

  reset(): void {
    this.state = State.Between;
    this.depth = 0;
    this.prefixes.length = 1;
    this.expectKey = false;
    this.escaped = false;
    this.current = null;
  }

  write(chunk: Buffer, start = 0, end = chunk.length): void {
    let i = start;
    while (i < end) {
      const state = this.state;
      if (state === State.Dead) return;
      if (state === State.String) {
        if (this.capture === 'skip' && !this.escaped) {
          // Most of a body is text nobody asked for: run to the next quote or backslash.
          while (i < end) {
            const d = chunk[i]!;
            if (d === QUOTE || d === BACKSLASH) break;
            i++;
          }
          if (i === end) return;
          if (chunk[i] === BACKSLASH) this.escaped = true;
          else {
            this.state = State.Between;
            this.endString();
          }
          i++;
          continue;
        }
        const c = chunk[i]!;
        if (this.escaped) {
          this.escaped = false;
          // An escape in a kept string: it matches nothing (model names and keys have none).
          if (this.capture !== 'skip') this.overflow = true;
        } else if (c === BACKSLASH) {
          this.escaped = true;
        } else if (c === QUOTE) {
          this.state = State.Between;
          this.endString();
        } else if (this.capture !== 'skip') {
          this.keep(c, this.capture === 'key' ? MAX_KEY : MAX_STRING);
        }
        i++;
        continue;
      }
      const c = chunk[i]!;
      if (state === State.Literal) {
        if (c === 0x2c || c === 0x7d || c === 0x5d || c === 0x3a || c <= 0x20) {
          this.state = State.Between;
          this.endLiteral();
          continue; // the delimiter is read again, between tokens
        }
        if (this.capture === 'value') this.keep(c, MAX_NUMBER);
        i++;
        continue;
      }
      i++;
      switch (c) {
        case 0x7b: // {
          this.open(Kind.Object);
          break;
        case 0x5b: // [
          this.open(Kind.Array);
          break;
        case 0x7d: // }
        case 0x5d: // ]
          if (this.depth > 0) this.depth--;
          this.expectKey = false;
          this.current = null;
          break;
        case 0x2c: // ,
          this.expectKey = this.kinds[this.depth] === Kind.Object;
          this.current = null;
          break;
        case 0x3a: // :
          this.expectKey = false;
          break;
        case QUOTE:
          this.state = State.String;
          this.escaped = false;
          this.startToken(this.expectKey && this.kinds[this.depth] === Kind.Object ? 'key' : this.wantedHere());
          break;
        default:
          if (c > 0x20) {
            this.state = State.Literal;
            this.startToken(this.wantedHere());
            if (this.capture === 'value') this.keep(c, MAX_NUMBER);
          }
      }
    }
  }

  /** The end of the document (or of its event). A number still being read is not taken: it may be cut short. */
  end(): void {
    this.state = State.Dead;
  }

  private open(kind: Kind): void {
    if (this.depth >= MAX_DEPTH) {
      this.state = State.Dead;
      return;
    }
    const parent = this.valuePrefix();
    this.depth++;
    this.kinds[this.depth] = kind;
    this.expectKey = kind === Kind.Object;
    // An object's prefix is its own path; its keys extend it. Arrays' elements are not tracked.
    this.prefixes[this.depth] = kind === Kind.Object && this.depth <= MAX_PATH_DEPTH ? parent : null;
    // No key read yet at this depth: a value before one (broken JSON) belongs nowhere.
    this.current = null;
  }

  /** The path of a value at the current position (the last key read), or null if untracked. */
  private valuePrefix(): string | null {
    if (this.depth === 0) return '';
    if (this.kinds[this.depth] !== Kind.Object) return null;
    return this.current;
  }

  /** The path of the last key read at the current depth. */
  private current: string | null = null;

  private wantedHere(): 'value' | 'skip' {
    const path = this.valuePrefix();
    if (path === null || !this.wanted.has(path)) return 'skip';
    this.valuePath = path;
    return 'value';
  }

  private startToken(capture: 'key' | 'value' | 'skip'): void {
    this.capture = capture;
    this.len = 0;
    this.overflow = false;
  }

  private keep(c: number, max: number): void {
    if (this.len >= max) {
      this.overflow = true;
      return;
    }
    this.buf[this.len++] = c;
  }

  private endString(): void {
    if (this.capture === 'key') {
      const prefix = this.prefixes[this.depth];
      this.current = prefix === null || prefix === undefined || this.overflow ? null : `${prefix === '' ? '' : prefix + '.'}${this.buf.toString('latin1', 0, this.len)}`;
      return;
    }
    if (this.capture === 'value' && !this.overflow) this.sink(this.valuePath, this.buf.toString('utf8', 0, this.len));
  }

  private endLiteral(): void {
    if (this.capture !== 'value' || this.overflow) return;
    const text = this.buf.toString('latin1', 0, this.len);
    // Whole, non-negative, at most 12 digits: a count no API reports beyond, and sums of many stay exact.
    if (/^(0|[1-9][0-9]{0,11})$/.test(text)) this.sink(this.valuePath, Number(text));
  }
}

const enum Sse {
  LineStart,
  Field,
  DataSpace,
  Data,
  SkipLine,
}

/** The longest field name kept ("data", "event", "id", "retry" are all shorter). */
const MAX_FIELD = 8;

/**
 * Server-sent events: each event's `data:` lines go, as they arrive, to one JsonFields scanner
 * (reset per event). Lines end with LF or CRLF; a lone CR as line end is not read (no API sends it).
 */
export class SseFields {
  private state = Sse.LineStart;
  private field = '';
  /** The current event has had a data line (a second one is joined with a newline). */
  private hadData = false;

  constructor(private readonly json: JsonFields) {}

  write(chunk: Buffer): void {
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      switch (this.state) {
        case Sse.LineStart: {
          const c = chunk[i]!;
          if (c === 0x0a) {
            this.dispatch();
            i++;
          } else if (c === 0x0d) {
            i++;
          } else {
            this.state = Sse.Field;
            this.field = '';
          }
          break;
        }
        case Sse.Field: {
          const c = chunk[i]!;
          if (c === 0x3a) {
            this.state = this.field === 'data' ? Sse.DataSpace : Sse.SkipLine;
            if (this.state === Sse.DataSpace) this.startData();
            i++;
          } else if (c === 0x0a) {
            // A field with no colon: its name is the field, its value empty; nothing to read.
            this.state = Sse.LineStart;
            i++;
          } else {
            if (this.field.length < MAX_FIELD) this.field += String.fromCharCode(c);
            else this.state = Sse.SkipLine;
            i++;
          }
          break;
        }
        case Sse.DataSpace:
          if (chunk[i] === 0x20) i++;
          this.state = Sse.Data;
          break;
        case Sse.Data: {
          const eol = chunk.indexOf(0x0a, i);
          const stop = eol === -1 ? n : eol;
          this.json.write(chunk, i, stop);
          if (eol === -1) return;
          this.state = Sse.LineStart;
          i = eol + 1;
          break;
        }
        case Sse.SkipLine: {
          const eol = chunk.indexOf(0x0a, i);
          if (eol === -1) return;
          this.state = Sse.LineStart;
          i = eol + 1;
          break;
        }
      }
    }
  }

  /** The end of the stream: an event without its blank line is dropped, as SSE says. */
  end(): void {
    this.hadData = false;
  }

  private startData(): void {
    if (this.hadData) this.json.write(NEWLINE);
    else this.json.reset();
    this.hadData = true;
  }

  private dispatch(): void {
    if (this.hadData) this.json.end();
    this.hadData = false;
  }
}

const NEWLINE = Buffer.from('\n');
