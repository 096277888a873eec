import type { Config } from '../config/schema.js';
import { comparePrioritized, priority, type Band, type Priority } from './priority.js';
import type { Ticket } from './ticket-model.js';

export interface QueueFilter {
  status?: 'open' | 'all';
  kind?: string;
  severity?: string;
  subject?: string;
  customer?: string;
  /** Resolved tickets shown with status=all (newest first), default 200. */
  limit?: number;
}

export interface QueueItem extends Record<string, unknown> {
  rank: number | null;
  id: number;
  band: Band;
  score: number;
  ageS: number;
  children: QueueItem[];
}

/**
 * The support queue (RULES.md "Support queue order"): unresolved top-level tickets in queue order, each child
 * (a ticket attached to an unresolved parent) nested under its parent and left out of the ranking; `resolved`
 * (status=all) follow, newest first. `view` is the ticket's API form.
 */
export function buildQueue(
  open: ReadonlyMap<number, Ticket>,
  resolved: readonly Ticket[],
  filter: QueueFilter,
  now: number,
  weights: Config['tickets'],
  view: (t: Ticket) => Record<string, unknown>,
): QueueItem[] {
  const matches = (t: Ticket): boolean =>
    (!filter.kind || t.kind === filter.kind) &&
    (!filter.severity || t.severity === filter.severity) &&
    (!filter.subject || t.subject === filter.subject) &&
    (!filter.customer || t.customer === filter.customer);
  // Priorities computed once per ticket, not per comparison.
  const cache = new Map<number, Priority>();
  const prio = (t: Ticket): Priority => {
    let p = cache.get(t.id);
    if (!p) cache.set(t.id, (p = priority(t, now, weights)));
    return p;
  };
  const item = (t: Ticket, rank: number | null, children: QueueItem[] = []): QueueItem => {
    const p = prio(t);
    return {
      ...view(t),
      rank,
      id: t.id,
      band: p.band,
      score: Math.round(p.score * 100) / 100,
      ageS: Math.max(0, Math.floor((now - t.openedAt) / 1000)),
      children,
    };
  };
  const byQueue = (a: Ticket, b: Ticket): number => comparePrioritized(a, prio(a), b, prio(b));
  const childrenOf = new Map<number, Ticket[]>();
  const top: Ticket[] = [];
  for (const t of open.values()) {
    if (t.parentId !== null && open.has(t.parentId)) {
      const list = childrenOf.get(t.parentId) ?? [];
      list.push(t);
      childrenOf.set(t.parentId, list);
    } else if (matches(t)) top.push(t);
  }
  top.sort(byQueue);
  const out = top.map((t, i) => item(t, i + 1, (childrenOf.get(t.id) ?? []).sort(byQueue).map((c) => item(c, null))));
  for (const t of resolved) if (matches(t)) out.push(item(t, null));
  return out;
}
