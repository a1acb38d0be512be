// `airlock audit --usage`: the LLM token usage on audit lines, summed per session, per model and
// per day (UTC), with the estimated cost where a price is known.
import { costOf, priceFor } from '../policy/index.js';
import type { ModelPrice } from '../policy/index.js';
import type { AuditLine } from './report.js';

export interface UsageTotals {
  /** Session id, model name or day (YYYY-MM-DD). */
  readonly key: string;
  calls: number;
  input: number;
  output: number;
  cacheRead: number;
  cacheWrite: number;
  /** Estimated US dollars over the calls that had a price. */
  costUsd: number;
  /** Calls with counts but no price for their model. */
  unpriced: number;
  /** Calls whose answer could not be read (usage.unread). */
  unread: number;
}

export interface UsageSummary {
  readonly total: UsageTotals;
  readonly sessions: readonly UsageTotals[];
  readonly models: readonly UsageTotals[];
  readonly days: readonly UsageTotals[];
}

function empty(key: string): UsageTotals {
  return { key, calls: 0, input: 0, output: 0, cacheRead: 0, cacheWrite: 0, costUsd: 0, unpriced: 0, unread: 0 };
}

/** A count as kept on a line: a whole number from 0 up, anything else is 0. */
function count(v: unknown): number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : 0;
}

/**
 * Sums the usage on `lines`. Each call's cost is the one on its line, or, when `pricing` is given,
 * worked out again from it (a price table from another policy file).
 */
export function summariseUsage(lines: readonly AuditLine[], pricing?: readonly ModelPrice[]): UsageSummary {
  const total = empty('total');
  const sessions = new Map<string, UsageTotals>();
  const models = new Map<string, UsageTotals>();
  const days = new Map<string, UsageTotals>();
  const bucket = (map: Map<string, UsageTotals>, key: string) => {
    let t = map.get(key);
    if (!t) map.set(key, (t = empty(key)));
    return t;
  };
  for (const line of lines) {
    const u = line.usage;
    if (!u || typeof u !== 'object') continue;
    // Printed as is below, so only a plain name is kept (the proxy writes nothing else).
    const model = typeof u.model === 'string' && /^[\x21-\x7e]{1,128}$/.test(u.model) ? u.model : '(unknown model)';
    const day = typeof line.time === 'string' ? line.time.slice(0, 10) : '(unknown day)';
    const counts = {
      input_tokens: count(u.input_tokens),
      output_tokens: count(u.output_tokens),
      cache_read_tokens: count(u.cache_read_tokens),
      cache_write_tokens: count(u.cache_write_tokens),
    };
    let cost: number | undefined;
    if (pricing) {
      const price = priceFor(pricing, u.model);
      cost = price ? costOf(price, counts) : undefined;
    } else if (typeof u.cost_usd === 'number' && Number.isFinite(u.cost_usd) && u.cost_usd >= 0) {
      cost = u.cost_usd;
    }
    for (const t of [total, bucket(sessions, String(line.session)), bucket(models, model), bucket(days, day)]) {
      t.calls++;
      if (u.unread !== undefined) {
        t.unread++;
        continue;
      }
      t.input += counts.input_tokens;
      t.output += counts.output_tokens;
      t.cacheRead += counts.cache_read_tokens;
      t.cacheWrite += counts.cache_write_tokens;
      if (cost !== undefined) t.costUsd += cost;
      else if (counts.input_tokens + counts.output_tokens + counts.cache_read_tokens + counts.cache_write_tokens > 0) t.unpriced++;
    }
  }
  const sorted = (map: Map<string, UsageTotals>) => [...map.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  for (const t of [total, ...sessions.values(), ...models.values(), ...days.values()]) t.costUsd = Math.round(t.costUsd * 1e6) / 1e6;
  return { total, sessions: sorted(sessions), models: sorted(models), days: sorted(days) };
}

function pad(value: string, width: number): string {
  return value.length >= width ? value : value + ' '.repeat(width - value.length);
}

function row(t: UsageTotals, width: number): string {
  const cost = t.calls - t.unread - t.unpriced > 0 ? `$${t.costUsd.toFixed(6)}` : '-';
  const notes = [t.unpriced ? `${t.unpriced} unpriced` : '', t.unread ? `${t.unread} unread` : ''].filter(Boolean).join(', ');
  return (
    `  ${pad(t.key, width)} calls ${pad(String(t.calls), 6)} input ${pad(String(t.input), 10)} output ${pad(String(t.output), 10)} ` +
    `cache-read ${pad(String(t.cacheRead), 10)} cache-write ${pad(String(t.cacheWrite), 10)} cost ${cost}${notes ? ` (${notes})` : ''}`
  );
}

export function formatUsage(s: UsageSummary): string {
  if (s.total.calls === 0) return 'no LLM API usage recorded\n';
  const width = Math.max(10, ...[...s.sessions, ...s.models, ...s.days].map((t) => t.key.length));
  const section = (title: string, rows: readonly UsageTotals[]) => [title, ...rows.map((t) => row(t, width))];
  return (
    [
      ...section('per session:', s.sessions),
      ...section('per model:', s.models),
      ...section('per day (UTC):', s.days),
      'total:',
      row(s.total, width),
    ].join('\n') + '\n'
  );
}
