import { AUTOMATIC_TICKETS, type ConditionReport } from '../tickets/types.js';
import type { HealthSettings } from './liveness.js';

export type SecuritySignalKind = 'auth_failure' | 'acl_violation' | 'patch_rejected' | 'integrity_mismatch';

export interface SecurityEvent {
  kind: SecuritySignalKind;
  deviceId?: string;
  detail?: string;
}

/** Signals counted within the last `security.windowS`. */
export interface SecurityWindow {
  /** Failed CONNECTs, fleet-wide (the id in a failed CONNECT is untrusted). */
  authFailures: number;
  /** ACL violations per device; key '' for violations not attributed to a device. */
  aclViolations: ReadonlyMap<string, number>;
  /** Agent-reported signature/hash failures per device. */
  patchFailures: ReadonlyMap<string, number>;
  /** Devices whose integrity digest did not match the one registered for their version. */
  integrityMismatchDevices: readonly string[];
}

/** Does a rejected patch's detail say its signature or hash failed (RULES.md "patch signature/hash failures")? */
export function isSignatureOrHashFailure(detail: string | undefined): boolean {
  return detail !== undefined && /signature|hash|sha-?256|digest|checksum/i.test(detail);
}

/**
 * RULES.md `security_incident` (problem, urgent). Subjects: `fleet` for bursts of failed CONNECTs, unattributed
 * ACL violations and integrity mismatches on several devices at once; the device itself for its own ACL
 * violations and for signature/hash failures it reported (that device got a bad artifact or is attacked).
 * Signals on one subject make one report, so they share a ticket.
 */
export function securityConditions(w: SecurityWindow, settings: Pick<HealthSettings, 'security'>): ConditionReport[] {
  const s = settings.security;
  const fleetSignals: string[] = [];
  const fleetDetails: Record<string, unknown> = {};
  let fleetCovers: string[] | undefined;
  if (w.authFailures >= s.authFailures) {
    fleetSignals.push(`${w.authFailures} failed CONNECTs`);
    fleetDetails.authFailures = w.authFailures;
  }
  const unattributed = w.aclViolations.get('') ?? 0;
  if (unattributed >= s.aclViolations) {
    fleetSignals.push(`${unattributed} ACL violations`);
    fleetDetails.aclViolations = unattributed;
  }
  if (w.integrityMismatchDevices.length >= s.integrityMismatchDevices) {
    fleetCovers = [...w.integrityMismatchDevices].sort();
    fleetSignals.push(`integrity mismatch on ${fleetCovers.length} devices`);
    fleetDetails.integrityMismatchDevices = fleetCovers;
  }
  const out: ConditionReport[] = [];
  if (fleetSignals.length > 0) {
    out.push({
      kind: 'security_incident',
      subject: 'fleet',
      ...AUTOMATIC_TICKETS.security_incident,
      summary: `security incident: ${fleetSignals.join('; ')} within ${s.windowS} s`,
      details: { ...fleetDetails, windowS: s.windowS },
      ...(fleetCovers ? { covers: fleetCovers } : {}),
    });
  }
  const perDevice = new Map<string, { signals: string[]; details: Record<string, unknown> }>();
  const slot = (id: string) => {
    let e = perDevice.get(id);
    if (!e) perDevice.set(id, (e = { signals: [], details: {} }));
    return e;
  };
  for (const [id, n] of w.aclViolations) {
    if (id === '' || n < s.aclViolations) continue;
    const e = slot(id);
    e.signals.push(`${n} ACL violations`);
    e.details.aclViolations = n;
  }
  for (const [id, n] of w.patchFailures) {
    if (n < s.patchFailures) continue;
    const e = slot(id);
    e.signals.push(`${n} patch signature/hash failure${n === 1 ? '' : 's'}`);
    e.details.patchFailures = n;
  }
  for (const id of [...perDevice.keys()].sort()) {
    const e = perDevice.get(id)!;
    out.push({
      kind: 'security_incident',
      subject: id,
      ...AUTOMATIC_TICKETS.security_incident,
      summary: `security incident on ${id}: ${e.signals.join('; ')} within ${s.windowS} s`,
      details: { ...e.details, windowS: s.windowS },
    });
  }
  return out;
}
