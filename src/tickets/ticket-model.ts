import type { Tier } from '../protocol/names.js';
import type { Band } from './priority.js';
import type { Classification, Severity, TicketKind, TicketStatus } from './types.js';

/** A ticket as the service holds it (times in ms since the epoch). */
export interface Ticket {
  id: number;
  kind: TicketKind;
  family: string;
  subject: string;
  customer: string | null;
  deviceId: string | null;
  origin: 'auto' | 'person';
  classification: Classification;
  severity: Severity;
  status: TicketStatus;
  summary: string;
  details: Record<string, unknown>;
  covers: string[];
  /** Condition keys (`kind|subject`) holding now; empty once cleared (auto-resolve pending). */
  conditions: string[];
  parentId: number | null;
  eligible: boolean;
  ineligibleReasons: string[];
  tier: Tier;
  band: Band;
  openedKind: TicketKind;
  openedSeverity: Severity;
  openedAt: number;
  waitingSince: number;
  updatedAt: number;
  ackedAt: number | null;
  resolvedAt: number | null;
  resolveReason: string | null;
  resolvedBy: 'auto' | 'person' | null;
  clearedAt: number | null;
  clearReason: string | null;
  reopenCount: number;
  dayKey: string;
}

export interface TicketRow {
  id: number;
  kind: string;
  family: string;
  subject: string;
  customer: string | null;
  device_id: string | null;
  origin: string;
  classification: string;
  severity: string;
  status: string;
  summary: string;
  details: string;
  covers: string;
  conditions: string;
  parent_id: number | null;
  eligible: number;
  ineligible_reasons: string;
  tier: string;
  band: string;
  opened_kind: string;
  opened_severity: string;
  opened_at: number;
  waiting_since: number;
  updated_at: number;
  acked_at: number | null;
  resolved_at: number | null;
  resolve_reason: string | null;
  resolved_by: string | null;
  cleared_at: number | null;
  clear_reason: string | null;
  reopen_count: number;
  day_key: string;
}

export const EVENT_TYPES = ['opened', 'updated', 'escalated', 'resolved', 'reopened', 'acknowledged', 'folded', 'child_attached'] as const;
export type TicketEventType = (typeof EVENT_TYPES)[number];

export interface TicketEvent {
  id: number;
  ticketId: number;
  ts: string;
  type: TicketEventType;
  data: Record<string, unknown>;
}

export function fromRow(row: TicketRow): Ticket {
  return {
    id: row.id,
    kind: row.kind as TicketKind,
    family: row.family,
    subject: row.subject,
    customer: row.customer,
    deviceId: row.device_id,
    origin: row.origin as Ticket['origin'],
    classification: row.classification as Classification,
    severity: row.severity as Severity,
    status: row.status as TicketStatus,
    summary: row.summary,
    details: JSON.parse(row.details) as Record<string, unknown>,
    covers: JSON.parse(row.covers) as string[],
    conditions: JSON.parse(row.conditions) as string[],
    parentId: row.parent_id,
    eligible: row.eligible === 1,
    ineligibleReasons: JSON.parse(row.ineligible_reasons) as string[],
    tier: row.tier as Tier,
    band: row.band as Band,
    openedKind: row.opened_kind as TicketKind,
    openedSeverity: row.opened_severity as Severity,
    openedAt: row.opened_at,
    waitingSince: row.waiting_since,
    updatedAt: row.updated_at,
    ackedAt: row.acked_at,
    resolvedAt: row.resolved_at,
    resolveReason: row.resolve_reason,
    resolvedBy: row.resolved_by as Ticket['resolvedBy'],
    clearedAt: row.cleared_at,
    clearReason: row.clear_reason,
    reopenCount: row.reopen_count,
    dayKey: row.day_key,
  };
}

/** Column values of a ticket for INSERT/UPDATE (named parameters). */
export function toParams(t: Omit<Ticket, 'id'> & { id?: number }): Record<string, unknown> {
  return {
    id: t.id ?? null,
    kind: t.kind,
    family: t.family,
    subject: t.subject,
    customer: t.customer,
    device_id: t.deviceId,
    origin: t.origin,
    classification: t.classification,
    severity: t.severity,
    status: t.status,
    summary: t.summary,
    details: JSON.stringify(t.details),
    covers: JSON.stringify(t.covers),
    conditions: JSON.stringify(t.conditions),
    parent_id: t.parentId,
    eligible: t.eligible ? 1 : 0,
    ineligible_reasons: JSON.stringify(t.ineligibleReasons),
    tier: t.tier,
    band: t.band,
    opened_kind: t.openedKind,
    opened_severity: t.openedSeverity,
    opened_at: t.openedAt,
    waiting_since: t.waitingSince,
    updated_at: t.updatedAt,
    acked_at: t.ackedAt,
    resolved_at: t.resolvedAt,
    resolve_reason: t.resolveReason,
    resolved_by: t.resolvedBy,
    cleared_at: t.clearedAt,
    clear_reason: t.clearReason,
    reopen_count: t.reopenCount,
    day_key: t.dayKey,
  };
}

export const COLUMNS = Object.keys(toParams({} as Ticket)).filter((c) => c !== 'id');

export function clone(t: Ticket): Ticket {
  return { ...t, details: { ...t.details }, covers: [...t.covers], conditions: [...t.conditions], ineligibleReasons: [...t.ineligibleReasons] };
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/** JSON form for the API, the CLI and the helpdesk payload. */
export function ticketView(t: Ticket): Record<string, unknown> {
  return {
    id: t.id,
    kind: t.kind,
    subject: t.subject,
    customer: t.customer,
    deviceId: t.deviceId,
    origin: t.origin,
    classification: t.classification,
    severity: t.severity,
    status: t.status,
    summary: t.summary,
    details: t.details,
    covers: t.covers,
    parentId: t.parentId,
    eligible: t.eligible,
    ineligibleReasons: t.ineligibleReasons,
    tier: t.tier,
    band: t.band,
    openedAt: iso(t.openedAt),
    waitingSince: iso(t.waitingSince),
    updatedAt: iso(t.updatedAt),
    ackedAt: iso(t.ackedAt),
    resolvedAt: iso(t.resolvedAt),
    resolveReason: t.resolveReason,
    resolvedBy: t.resolvedBy,
    clearedAt: iso(t.clearedAt),
    reopenCount: t.reopenCount,
  };
}
