// Audit export: every audit line, as it is written, also to where an operator's tools read it.
//
//   stdout               JSON lines on standard output
//   unix:/path/to.sock   JSON lines to a listening unix stream socket (vector, fluent-bit, ...);
//                        reconnected every second while it is down
//   otlp:http://host:4318[/v1/logs]   OpenTelemetry log records over OTLP/HTTP (JSON encoding)
//
// A JSON line is the audit line itself (the same text as audit.jsonl; see the README for its
// fields). The export never holds the proxy up: each target has a bounded queue, a target that
// is down or slow loses what does not fit, and the loss is counted, reported through `report`
// and, on the JSON-line targets, said in the stream itself by an {"export":"dropped"} line before
// the next line that goes through. An audit line names credentials and never holds a secret
// value (query values are redacted before the line exists), so neither does anything exported.
import { write as fsWrite } from 'node:fs';
import net from 'node:net';
import type { AnyValueMap, Logger } from '@opentelemetry/api-logs';
import type { LoggerProvider, LogRecordExporter, ReadableLogRecord } from '@opentelemetry/sdk-logs';
import type { AuditEntry } from './entry.js';
import type { AuditLog } from './log.js';

export type ExportTarget =
  | { readonly kind: 'stdout' }
  | { readonly kind: 'unix'; readonly path: string }
  | { readonly kind: 'otlp'; readonly url: string };

/** Told when a target has lost lines: how many since the last report, and in all. */
export type DropReport = (target: string, dropped: number, total: number) => void;

/** Bytes of JSON lines a target may hold while it cannot take them. */
const LINE_QUEUE_BYTES = 4 * 1024 * 1024;
/** Log records the OTLP exporter may hold (queued and in flight). */
const OTLP_QUEUE = 4096;
/** Drops are reported at most this often per target. */
const REPORT_EVERY_MS = 5_000;

/** Parses an --audit-export value; the error says what is accepted. */
export function parseExportTarget(text: string): ExportTarget {
  if (text === 'stdout') return { kind: 'stdout' };
  if (text.startsWith('unix:')) {
    const path = text.slice('unix:'.length);
    if (!path.startsWith('/')) throw new Error(`--audit-export ${text}: give the socket's absolute path, e.g. unix:/run/vector/airlock.sock`);
    return { kind: 'unix', path };
  }
  if (text.startsWith('otlp:')) {
    let url: URL;
    try {
      url = new URL(text.slice('otlp:'.length));
    } catch {
      throw new Error(`--audit-export ${text}: not a URL; use e.g. otlp:http://127.0.0.1:4318`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`--audit-export ${text}: OTLP/HTTP takes an http: or https: URL`);
    if (url.username || url.password) throw new Error(`--audit-export ${text}: no credentials in the URL (they would be shown in messages); the exporter reads OTEL_EXPORTER_OTLP_HEADERS`);
    if (url.pathname === '/' || url.pathname === '') url.pathname = '/v1/logs';
    return { kind: 'otlp', url: url.toString() };
  }
  throw new Error(`--audit-export ${JSON.stringify(text)}: use stdout, unix:/path/to.sock or otlp:http://host:4318`);
}

export function describeTarget(t: ExportTarget): string {
  return t.kind === 'stdout' ? 'stdout' : t.kind === 'unix' ? `unix:${t.path}` : `otlp:${t.url}`;
}

interface Sink {
  readonly name: string;
  send(entry: Readonly<AuditEntry>, time: string): void;
  /** Lines lost so far. */
  readonly dropped: number;
  close(): Promise<void>;
}

/** Counts drops and reports them, at most every REPORT_EVERY_MS (and once more at close). */
class DropCounter {
  total = 0;
  private reported = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly target: string,
    private readonly report: DropReport,
  ) {}

  add(n: number): void {
    if (n <= 0) return;
    this.total += n;
    if (this.timer) return;
    this.flush();
    this.timer = setTimeout(() => {
      this.timer = null;
      this.flush();
    }, REPORT_EVERY_MS);
    this.timer.unref();
  }

  flush(): void {
    const fresh = this.total - this.reported;
    if (fresh <= 0) return;
    this.reported = this.total;
    try {
      this.report(this.target, fresh, this.total);
    } catch {
      /* a report must not fail the export */
    }
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.flush();
  }
}

/** Where JSON lines are written: one write at a time; `done` gets an error when it failed. */
interface LineTransport {
  ready(): boolean;
  write(data: Buffer, done: (err?: Error) => void): void;
  /** Called when the transport becomes ready again. */
  onReady(listener: () => void): void;
  close(): void;
}

/** JSON lines through a transport, with a bounded queue in front of it. */
class LineSink implements Sink {
  private queue: string[] = [];
  private queued = 0;
  private inFlight = false;
  private readonly drops: DropCounter;
  /** Lines dropped since the last line that went out: said in the stream before the next one. */
  private gap = 0;

  constructor(
    readonly name: string,
    private readonly transport: LineTransport,
    report: DropReport,
  ) {
    this.drops = new DropCounter(name, report);
    transport.onReady(() => this.pump());
  }

  get dropped(): number {
    return this.drops.total;
  }

  send(entry: Readonly<AuditEntry>, time: string): void {
    const line = `{"time":"${time}",${JSON.stringify(entry).slice(1)}\n`;
    if (this.queued + line.length > LINE_QUEUE_BYTES) {
      this.lost(1);
      return;
    }
    if (this.gap > 0) {
      const note = `{"time":"${time}","export":"dropped","dropped":${this.gap},"dropped_total":${this.drops.total}}\n`;
      this.queue.push(note);
      this.queued += note.length;
      this.gap = 0;
    }
    this.queue.push(line);
    this.queued += line.length;
    this.pump();
  }

  private lost(n: number): void {
    this.gap += n;
    this.drops.add(n);
  }

  private pump(): void {
    if (this.inFlight || this.queue.length === 0 || !this.transport.ready()) return;
    const lines = this.queue;
    this.queue = [];
    this.queued = 0;
    this.inFlight = true;
    this.transport.write(Buffer.from(lines.join('')), (err) => {
      this.inFlight = false;
      if (err) this.lost(lines.filter((l) => !l.includes('"export":"dropped"')).length);
      this.pump();
    });
  }

  async close(): Promise<void> {
    // What is queued gets a moment to go out.
    for (let i = 0; i < 20 && (this.inFlight || this.queue.length) && this.transport.ready(); i++) await new Promise((r) => setTimeout(r, 25));
    this.transport.close();
    this.drops.close();
  }
}

/** Standard output, written by fs.write so that a slow reader never blocks the event loop. */
function stdoutTransport(): LineTransport {
  return {
    ready: () => true,
    write: (data, done) => {
      const next = (offset: number) =>
        fsWrite(1, data, offset, data.length - offset, null, (err, written) => {
          if (err) return done(err);
          if (offset + written < data.length) next(offset + written);
          else done();
        });
      next(0);
    },
    onReady: () => {},
    close: () => {},
  };
}

/** A unix stream socket, reconnected every second while it is down. */
function unixTransport(path: string): LineTransport {
  let socket: net.Socket | null = null;
  let connected = false;
  let closed = false;
  let retry: NodeJS.Timeout | null = null;
  let readyListener = () => {};
  const connect = () => {
    if (closed) return;
    const s = net.connect(path);
    socket = s;
    s.on('connect', () => {
      connected = true;
      readyListener();
    });
    s.on('error', () => {});
    s.on('close', () => {
      connected = false;
      socket = null;
      if (closed) return;
      retry = setTimeout(connect, 1_000);
      retry.unref();
    });
    s.on('data', () => {}); // whatever the reader says is not read
    s.unref();
  };
  connect();
  return {
    ready: () => connected,
    write: (data, done) => {
      const s = socket;
      if (!s || !connected) return done(new Error('not connected'));
      let settled = false;
      const finish = (err?: Error) => {
        if (settled) return;
        settled = true;
        s.off('close', onClose);
        done(err);
      };
      const onClose = () => finish(new Error('closed'));
      s.once('close', onClose);
      s.write(data, (err) => finish(err ?? undefined));
    },
    onReady: (listener) => {
      readyListener = listener;
    },
    close: () => {
      closed = true;
      if (retry) clearTimeout(retry);
      socket?.end();
    },
  };
}

/** The audit line as an OpenTelemetry log record's attributes (semantic-convention names where they exist). */
export function otlpAttributes(e: Readonly<AuditEntry>): AnyValueMap {
  const a: AnyValueMap = {
    'airlock.session': e.session,
    'airlock.request.id': e.id,
    'airlock.kind': e.kind,
    'http.request.method': e.method,
    'url.scheme': e.scheme,
    'server.address': e.host,
    'server.port': e.port,
    'url.path': e.path,
    'http.response.status_code': e.status,
    'airlock.action': e.action,
    'airlock.reason': e.reason,
    'airlock.credentials': [...e.credentials],
    'airlock.bytes_up': e.bytes_up,
    'airlock.bytes_down': e.bytes_down,
    'airlock.duration_ms': e.duration_ms,
  };
  if (e.rule !== null) a['airlock.rule'] = e.rule;
  if (e.policy_version) a['airlock.policy_version'] = e.policy_version;
  if (e.detail) a['airlock.detail'] = e.detail;
  const u = e.usage;
  if (u) {
    a['gen_ai.provider.name'] = u.api;
    if (u.model !== undefined) a['gen_ai.response.model'] = u.model;
    if (u.input_tokens !== undefined) a['gen_ai.usage.input_tokens'] = u.input_tokens;
    if (u.output_tokens !== undefined) a['gen_ai.usage.output_tokens'] = u.output_tokens;
    if (u.cache_read_tokens !== undefined) a['gen_ai.usage.cache_read.input_tokens'] = u.cache_read_tokens;
    if (u.cache_write_tokens !== undefined) a['gen_ai.usage.cache_creation.input_tokens'] = u.cache_write_tokens;
    if (u.cost_usd !== undefined) a['airlock.usage.cost_usd'] = u.cost_usd;
    if (u.unread !== undefined) a['airlock.usage.unread'] = u.unread;
  }
  return a;
}

/** Counts the records an export call lost (the collector refused them or could not be reached). */
class CountingExporter implements LogRecordExporter {
  constructor(
    private readonly inner: LogRecordExporter,
    private readonly settled: (records: number, ok: boolean) => void,
  ) {}

  export(logs: ReadableLogRecord[], resultCallback: Parameters<LogRecordExporter['export']>[1]): void {
    let once = false;
    this.inner.export(logs, (result) => {
      if (once) return;
      once = true;
      this.settled(logs.length, result.code === 0);
      resultCallback(result);
    });
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}

/** OpenTelemetry severity numbers (api-logs SeverityNumber). */
const SEVERITY_INFO = 9;
const SEVERITY_WARN = 13;

/**
 * The OpenTelemetry SDK, loaded on first use: it takes a few hundred milliseconds to load, which
 * no command without an OTLP target should pay.
 */
async function openTelemetry() {
  const [{ OTLPLogExporter }, { resourceFromAttributes }, { BatchLogRecordProcessor, LoggerProvider }] = await Promise.all([
    import('@opentelemetry/exporter-logs-otlp-http'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/sdk-logs'),
  ]);
  return { OTLPLogExporter, resourceFromAttributes, BatchLogRecordProcessor, LoggerProvider };
}

/** OpenTelemetry logs over OTLP/HTTP: the SDK's batch processor, behind a gate that bounds what it holds. */
class OtlpSink implements Sink {
  private provider: LoggerProvider | null = null;
  private logger: Logger | null = null;
  /** Lines that came before the SDK was loaded (within the gate's bound). */
  private early: Array<[Readonly<AuditEntry>, string]> = [];
  private readonly loaded: Promise<void>;
  private readonly drops: DropCounter;
  /** Records emitted and not yet exported or lost. */
  private pending = 0;

  constructor(
    readonly name: string,
    url: string,
    report: DropReport,
  ) {
    this.drops = new DropCounter(name, report);
    this.loaded = openTelemetry().then(
      (otel) => {
        const exporter = new CountingExporter(new otel.OTLPLogExporter({ url, timeoutMillis: 5_000, concurrencyLimit: 4 }), (n, ok) => {
          this.pending -= n;
          if (!ok) this.drops.add(n);
        });
        this.provider = new otel.LoggerProvider({
          resource: otel.resourceFromAttributes({ 'service.name': 'airlock' }),
          processors: [
            // The gate in send() keeps the processor's queue below its own limit, so every loss is one this counts.
            new otel.BatchLogRecordProcessor({ exporter, maxQueueSize: OTLP_QUEUE + 512, maxExportBatchSize: 512, scheduledDelayMillis: 500, exportTimeoutMillis: 10_000 }),
          ],
        });
        this.logger = this.provider.getLogger('airlock.audit');
        for (const [entry, time] of this.early) this.emit(entry, time);
        this.early = [];
      },
      () => {
        this.drops.add(this.early.length);
        this.pending -= this.early.length;
        this.early = [];
      },
    );
  }

  get dropped(): number {
    return this.drops.total;
  }

  send(entry: Readonly<AuditEntry>, time: string): void {
    if (this.pending >= OTLP_QUEUE) {
      this.drops.add(1);
      return;
    }
    this.pending++;
    if (this.logger) this.emit(entry, time);
    else this.early.push([entry, time]);
  }

  private emit(entry: Readonly<AuditEntry>, time: string): void {
    const denied = entry.action !== 'allow';
    this.logger!.emit({
      timestamp: new Date(time),
      severityNumber: denied ? SEVERITY_WARN : SEVERITY_INFO,
      severityText: denied ? 'WARN' : 'INFO',
      eventName: 'airlock.audit',
      body: `${entry.action} ${entry.status} ${entry.method} ${entry.scheme}://${entry.host}:${entry.port}${entry.kind === 'tunnel' ? '' : entry.path}`,
      attributes: otlpAttributes(entry),
    });
  }

  async close(): Promise<void> {
    await this.loaded;
    if (this.provider) await Promise.race([this.provider.shutdown().catch(() => {}), new Promise((r) => setTimeout(r, 6_000).unref())]);
    this.drops.close();
  }
}

/** The export targets of one proxy process; attach() each session's audit log. */
export class AuditExports {
  private readonly sinks: Sink[];

  constructor(targets: readonly ExportTarget[], report: DropReport) {
    this.sinks = targets.map((t) => {
      const name = describeTarget(t);
      if (t.kind === 'stdout') return new LineSink(name, stdoutTransport(), report);
      if (t.kind === 'unix') return new LineSink(name, unixTransport(t.path), report);
      return new OtlpSink(name, t.url, report);
    });
  }

  get empty(): boolean {
    return this.sinks.length === 0;
  }

  /** Lines each target has lost so far. */
  dropped(): Record<string, number> {
    return Object.fromEntries(this.sinks.map((s) => [s.name, s.dropped]));
  }

  /** Sends every line `log` writes from now on; returns the call that stops it. */
  attach(log: AuditLog): () => void {
    if (this.sinks.length === 0) return () => {};
    return log.subscribe((entry, time) => {
      for (const sink of this.sinks) sink.send(entry, time);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.sinks.map((s) => s.close()));
  }
}
