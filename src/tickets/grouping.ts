import type { Ticket } from './ticket-model.js';
import type { TicketIndex } from './ticket-index.js';
import type { TicketKind } from './types.js';
import type { WorkingSet } from './working-set.js';

/** RULES.md "One ticket per problem": gateway_partial and gateway_loss of one gateway are one ticket. */
export function ticketFamily(kind: TicketKind): string {
  return kind === 'gateway_partial' || kind === 'gateway_loss' ? 'gateway' : kind;
}

/**
 * Grouping levels (RULES.md "Grouping and inhibition"): sensors (0) are covered by gateway tickets (1), gateways by
 * customer (2) and fleet (3) tickets. Kinds outside the hierarchy are -1.
 */
export function groupLevel(kind: TicketKind): number {
  switch (kind) {
    case 'sensor_issue':
      return 0;
    case 'gateway_partial':
    case 'gateway_loss':
      return 1;
    case 'cloud_loss_partial':
    case 'cloud_loss_complete':
      return 2;
    case 'major_outage':
      return 3;
    default:
      return -1;
  }
}

/** The level of the tickets a ticket of `level` covers: gateway tickets cover sensors, higher ones cover gateways. */
export function childLevelOf(level: number): number {
  return level >= 2 ? 1 : 0;
}

/** The key of one condition on one subject, as stored in a ticket's `conditions`. */
export const conditionKey = (kind: TicketKind, subject: string): string => `${kind}|${subject}`;

/** The key of a ticket family on one subject (dedupe of automatic tickets). */
export const familyKey = (kind: TicketKind, subject: string): string => `${ticketFamily(kind)}|${subject}`;

/** Matches the condition keys of one slot: this subject and any kind of this kind's dedupe family. */
export function slotMatcher(kind: TicketKind, subject: string): (key: string) => boolean {
  const family = ticketFamily(kind);
  return (key) => {
    const bar = key.indexOf('|');
    return key.slice(bar + 1) === subject && ticketFamily(key.slice(0, bar) as TicketKind) === family;
  };
}

/** The UTC day a ticket counts against for fair use (RULES.md "Fair use": per day). */
export const utcDay = (ms: number): string => new Date(ms).toISOString().slice(0, 10);

/** The highest-level unresolved ticket that covers this subject at the level above this kind, if any. */
export function coveringParent(idx: TicketIndex, ws: WorkingSet, kind: TicketKind, subject: string, exclude: number | null): number | null {
  const level = groupLevel(kind);
  if (level < 0) return null;
  const candidates = idx.coveringTickets(subject);
  if (!candidates) return null;
  let best: Ticket | undefined;
  for (const id of candidates) {
    if (id === exclude) continue;
    const p = ws.get(id);
    if (!p || p.status === 'resolved') continue;
    const pl = groupLevel(p.kind);
    if (pl <= level || childLevelOf(pl) !== level) continue;
    if (!best || pl > groupLevel(best.kind)) best = p;
  }
  return best ? best.id : null;
}

/** Attach unresolved tickets of the subjects a grouping ticket covers (gateways to customer/fleet, sensors to gateways). */
export function attachChildren(idx: TicketIndex, ws: WorkingSet, parent: Ticket): void {
  const level = groupLevel(parent.kind);
  if (level < 1 || parent.status === 'resolved') return;
  const childLevel = childLevelOf(level);
  const attached: { id: number; subject: string }[] = [];
  for (const subject of parent.covers) {
    const id = idx.byFamilyKey(childLevel === 1 ? `gateway|${subject}` : `sensor_issue|${subject}`);
    if (id === undefined || id === parent.id) continue;
    const child = ws.get(id)!;
    if (child.status === 'resolved' || child.parentId === parent.id) continue;
    if (child.parentId !== null) {
      const current = ws.get(child.parentId);
      if (current && current.status !== 'resolved' && groupLevel(current.kind) >= level) continue;
    }
    child.parentId = parent.id;
    ws.save(child);
    ws.event(child, 'updated', { attachedTo: parent.id });
    attached.push({ id: child.id, subject: child.subject });
  }
  // One event for the batch: a fleet-wide ticket may take thousands of children at once.
  if (attached.length > 0) ws.event(parent, 'child_attached', { children: attached });
}
