import type { Heartbeat } from '../protocol/types.js';
import type { DeviceRecord } from '../registry/types.js';
import type { DeviceView, Fault, LiveState } from './device-conditions.js';
import type { LivenessInput } from './liveness.js';

/** Everything the evaluator tracks of one device, in memory. Times are monotonic ms (`Clock.monotonicNow`). */
export interface Tracked {
  id: string;
  type: DeviceRecord['type'];
  parent: string | null;
  customer: string;
  /** Receive time of its own latest heartbeat or `{"online":true}`. */
  ownLastSeen: number | null;
  ownIntervalS: number | null;
  /** Receive time of the latest gateway heartbeat listing this sensor. */
  reportedAt: number | null;
  willAt: number | null;
  watchFrom: number;
  state: LiveState;
  lostReason: 'silence' | 'will' | null;
  lostSince: number | null;
  stateChangedAt: number | null;
  /** It was lost when the daemon last stopped: its first sign of life is a `back`. */
  wasLost: boolean;
  /** It was online when the daemon last stopped: part of the reconnect herd the start-up grace waits for. */
  wasOnline: boolean;
  /** Time of its live entry in the deadline heap; Infinity when none. */
  scheduledAt: number;
  subsystemFaults: Fault[];
  subsystemKey: string;
  reportFault: Fault | null;
  changes: number[];
  /** The (software version, digest) pair of its latest heartbeat with a digest: checked again only when it changes. */
  integrityVersion: string | null;
  integrityDigest: string | null;
  /** Evaluated at least once since start (its first sign of life re-checks tickets left open before a restart). */
  evaluated: boolean;
  /** Heard from since the daemon started. */
  heardSinceStart: boolean;
  /** Gateways: may its sensors open tickets of their own (RULES.md "Grouping and inhibition")? */
  fineForSensors: boolean;
  /** Gateways: its Last Will is pending (within the grace): its sensors are not judged alone (issue 8, fault 6). */
  holdsSensors: boolean;
}


/** A device as the evaluator first sees it (start, or registration): unknown, watched from `now`. */
export function newTracked(d: DeviceRecord, now: number): Tracked {
  return {
    id: d.id,
    type: d.type,
    parent: d.parent,
    customer: d.customer,
    ownLastSeen: null,
    ownIntervalS: null,
    reportedAt: null,
    willAt: null,
    watchFrom: now,
    state: 'unknown',
    lostReason: null,
    lostSince: null,
    stateChangedAt: null,
    wasLost: false,
    wasOnline: false,
    scheduledAt: Infinity,
    subsystemFaults: [],
    subsystemKey: '',
    reportFault: null,
    changes: [],
    integrityVersion: null,
    integrityDigest: null,
    evaluated: false,
    heardSinceStart: false,
    fineForSensors: true,
    holdsSensors: false,
};
}

/** Latest sign of life: its own heartbeat or a gateway listing it, whichever is later (PROTOCOL.md). */
export function lastSeenOf(t: Tracked): number | null {
  if (t.ownLastSeen === null) return t.reportedAt;
  if (t.reportedAt === null) return t.ownLastSeen;
  return Math.max(t.ownLastSeen, t.reportedAt);
}

/** The liveness facts of one device; a sensor without an interval of its own uses its gateway's. */
export function livenessInputOf(t: Tracked, parentIntervalS: number | null): LivenessInput {
  return { lastSeen: lastSeenOf(t), intervalS: t.ownIntervalS ?? parentIntervalS, willAt: t.willAt, watchFrom: t.watchFrom };
}

/** What the condition rules (device-conditions.ts) look at. */
export function viewOf(t: Tracked): DeviceView {
  const faults = t.reportFault ? [...t.subsystemFaults, t.reportFault] : t.subsystemFaults;
  return { id: t.id, state: t.state, lostReason: t.lostReason ?? undefined, faults };
}

/**
 * A heartbeat's subsystems, compared with the device's current faults: true when they changed (then
 * `t.subsystemFaults` is the new list). Issue 12: nothing is allocated per beat while every subsystem is ok,
 * the common case; the list is built only when the faults changed.
 */
export function noteSubsystems(t: Tracked, subsystems: Heartbeat['subsystems']): boolean {
  let key = '';
  if (subsystems) for (const s of subsystems) if (!s.ok) key += `${key ? '\n' : ''}subsystem:${s.name}=${s.detail ?? ''}`;
  if (key === t.subsystemKey) return false;
  t.subsystemKey = key;
  t.subsystemFaults = (subsystems ?? []).filter((s) => !s.ok).map((s) => ({ source: `subsystem:${s.name}`, detail: s.detail ?? '' }));
  return true;
}

/** Is (version, digest) new for this device? Records it; the caller then checks it against the registered digest. */
export function noteIntegrity(t: Tracked, version: string, digest: string): boolean {
  if (t.integrityVersion === version && t.integrityDigest === digest) return false;
  t.integrityVersion = version;
  t.integrityDigest = digest;
  return true;
}
