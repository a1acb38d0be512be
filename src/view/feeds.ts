// The audit feeds of every session the view has seen, and the one timer that advances the ones a
// page follows. Sessions that end stay listed (marked ended) for as long as the view runs: their
// logs remain, and an operator may be looking at one when it ends.
import { AuditFeed } from './feed.js';
import type { FeedSubscriber } from './feed.js';
import type { SessionSource, ViewSession } from './source.js';

/** How often a followed log is looked at: a row shows within this (plus the log's own write). */
const POLL_MS = 100;
const PING_EVERY = 150; // polls: 15 s
/** Ended sessions still listed, newest first; older ones are forgotten. */
const MAX_ENDED = 100;

export interface KnownSession extends ViewSession {
  readonly live: boolean;
}

export class Feeds {
  private readonly feeds = new Map<string, AuditFeed>();
  private readonly known = new Map<string, ViewSession>();
  private live = new Set<string>();
  /** Ended sessions whose logs were read to the end. */
  private readonly settled = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private polls = 0;

  constructor(private readonly source: SessionSource) {}

  /** Every session seen, live ones first (newest first), and their feeds caught up. */
  async sessions(): Promise<KnownSession[]> {
    const list = await this.source.list();
    this.live = new Set(list.map((s) => s.id));
    for (const s of list) {
      this.known.set(s.id, s);
      this.settled.delete(s.id);
      const feed = this.feeds.get(s.id);
      if (!feed || feed.file !== s.auditFile) {
        feed?.close();
        this.feeds.set(s.id, new AuditFeed(s.id, s.auditFile, () => this.blindRules(s.id)));
      }
    }
    const ended = [...this.known.values()].filter((s) => !this.live.has(s.id)).sort((a, b) => b.created.localeCompare(a.created));
    for (const s of ended.slice(MAX_ENDED)) {
      this.known.delete(s.id);
      this.feeds.get(s.id)?.close();
      this.feeds.delete(s.id);
      this.settled.delete(s.id);
    }
    for (const [id, feed] of this.feeds) {
      if (this.settled.has(id) && feed.following === 0) continue;
      feed.catchUp();
      // An ended session's log no longer grows: read to its end once; its counts stay, its
      // descriptor goes.
      if (!this.live.has(id) && feed.following === 0) {
        feed.release();
        this.settled.add(id);
      }
    }
    return [...this.known.values()]
      .map((s) => ({ ...s, live: this.live.has(s.id) }))
      .sort((a, b) => Number(b.live) - Number(a.live) || b.created.localeCompare(a.created));
  }

  /** The feed of a session listed by the last sessions() call. */
  feed(id: string): AuditFeed | undefined {
    return this.feeds.get(id);
  }

  session(id: string): ViewSession | undefined {
    return this.known.get(id);
  }

  /** Streams a session's log to a page until the returned function is called. */
  follow(feed: AuditFeed, subscriber: FeedSubscriber, after: number | null): () => void {
    const stop = feed.subscribe(subscriber, after);
    this.timer ??= setInterval(() => this.poll(), POLL_MS);
    return () => {
      stop();
      if (!this.live.has(feed.session)) feed.release();
      if ([...this.feeds.values()].every((f) => f.following === 0) && this.timer) {
        clearInterval(this.timer);
        this.timer = null;
      }
    };
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const feed of this.feeds.values()) feed.close();
    this.feeds.clear();
  }

  private poll(): void {
    const ping = ++this.polls % PING_EVERY === 0;
    for (const feed of this.feeds.values()) {
      if (feed.following === 0) continue;
      feed.catchUp();
      if (ping) feed.ping();
    }
  }

  private blindRules(id: string): ReadonlySet<string> {
    return new Set((this.known.get(id)?.rules ?? []).filter((r) => !r.inspect).map((r) => r.label));
  }
}
