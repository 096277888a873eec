import type { DeviceType, Tier } from '../protocol/names.js';

/** A registered device as the registry returns it (no credentials). */
export interface DeviceRecord {
  id: string;
  type: DeviceType;
  parent: string | null;
  customer: string;
  installer: string;
  tier: Tier;
  /** ISO date (YYYY-MM-DD) the subscription started, or null for tier none. */
  subscriptionStart: string | null;
  /** ISO date (YYYY-MM-DD), the June 30 it expires on (RULES.md "Subscriptions"), or null. */
  subscriptionEnd: string | null;
  tags: string[];
  createdAt: number;
  revokedAt: number | null;
}

/** What the daemon knows of a device's liveness and its latest heartbeat. */
export interface DeviceLiveState {
  deviceId: string;
  lastSeen: number | null;
  online: boolean;
  connected: boolean;
  willAt: number | null;
  seq: number | null;
  bootId: string | null;
  intervalS: number | null;
  agentVersion: string | null;
  softwareVersion: string | null;
  integrity: string | null;
  heartbeats: number;
  stateChangedAt: number | null;
}

/**
 * Read access to the registry for the evaluator, tickets and scheduler: in-memory, O(1) lookups,
 * kept in step with the database by the registry itself.
 */
export interface DeviceDirectory {
  get(id: string): DeviceRecord | undefined;
  all(): Iterable<DeviceRecord>;
  /** Sensors whose `parent` is this gateway. */
  childrenOf(gatewayId: string): readonly DeviceRecord[];
  /** Gateways of a customer. */
  gatewaysOf(customer: string): readonly DeviceRecord[];
  /** Count of non-revoked gateways in the fleet. */
  gatewayCount(): number;
  /** Called with each device added, changed or revoked. Returns an unsubscribe function. */
  onChange(listener: (device: DeviceRecord) => void): () => void;
}
