// Per-session limits: concurrent connections, request rate (token bucket) and an upload budget.
// One session hammering the proxy is refused with 429 and cannot starve the others.
import type { Limits } from '../policy/index.js';

export class SessionUsage {
  private connections = 0;
  private uploaded = 0;
  private tokens: number;
  private refilledAt = performance.now();

  constructor(private readonly limits: Limits) {
    this.tokens = limits.requestsPerSecond ?? 0;
  }

  /** Claims a connection slot; false when the session is at its cap. */
  openConnection(): boolean {
    if (this.limits.maxConnections !== null && this.connections >= this.limits.maxConnections) return false;
    this.connections++;
    return true;
  }

  closeConnection(): void {
    this.connections = Math.max(0, this.connections - 1);
  }

  /** Takes one request token; false when the session is over its rate. */
  takeRequest(): boolean {
    const rate = this.limits.requestsPerSecond;
    if (rate === null) return true;
    const now = performance.now();
    this.tokens = Math.min(rate, this.tokens + ((now - this.refilledAt) / 1000) * rate);
    this.refilledAt = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Bytes still allowed upstream, or Infinity without a budget. */
  uploadLeft(): number {
    return this.limits.maxUploadBytes === null ? Infinity : this.limits.maxUploadBytes - this.uploaded;
  }

  /** Counts sent bytes; false once the budget is exceeded. */
  addUpload(bytes: number): boolean {
    this.uploaded += bytes;
    return this.uploadLeft() >= 0;
  }
}

const usages = new WeakMap<object, SessionUsage>();

export function usageOf(session: { readonly policy: { readonly limits: Limits } }): SessionUsage {
  let usage = usages.get(session);
  if (!usage) {
    usage = new SessionUsage(session.policy.limits);
    usages.set(session, usage);
  }
  return usage;
}
