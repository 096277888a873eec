import type { PatchState } from './names.js';

/** The typed form of the PROTOCOL.md payloads. Dependency-free: the agent imports this. */
export interface SubsystemReport {
  name: string;
  ok: boolean;
  detail?: string;
}

export interface SensorReport {
  id: string;
  ok: boolean;
  detail?: string;
}

export interface HeartbeatPatch {
  rolloutId?: string;
  patchId: string;
  state: PatchState;
}

export interface Heartbeat {
  seq: number;
  ts: string;
  bootId?: string;
  intervalS: number;
  uptimeS?: number;
  agentVersion: string;
  softwareVersion: string;
  integrity?: string;
  health?: { cpu?: number; memUsed?: number; diskUsed?: number; load1?: number };
  subsystems?: SubsystemReport[];
  sensors?: SensorReport[];
  patch?: HeartbeatPatch;
}

export interface StateMessage {
  online: boolean;
}

export interface PatchOffer {
  rolloutId?: string;
  manifest: string;
  signature: string;
  /** Optional extra signatures (threshold signing); each `{ keyId, signature }`, base64. */
  signatures?: { keyId: string; signature: string }[];
  url: string;
}

export interface PatchStatus {
  rolloutId?: string;
  patchId: string;
  state: PatchState;
  detail?: string;
  /**
   * Set with `failed` when the failure is transient (download timeout, an install that exited 75,
   * EX_TEMPFAIL): the daemon may offer the same patch again (RULES.md "Retries"). Absent = not retryable.
   */
  retryable?: boolean;
}

/** PROTOCOL.md "PatchCancel" (daemon -> device, on `cmd/patch`). Agents that do not know `action` ignore it. */
export interface PatchCancel {
  action: 'cancel';
  rolloutId?: string;
  patchId: string;
}
