import type { ConditionSink } from '../tickets/types.js';

/**
 * What the scheduler needs from the rest of the daemon, as ports the lead wires in src/app.ts:
 * the patch repository, the broker, eligibility, the latest heartbeat and the ticket service.
 * Tests use a small real implementation that records offers.
 */
export interface PublishedPatch {
  id: string;
  version: string;
  /** Device types the manifest applies to (`appliesTo.types`); empty means any. */
  types: string[];
  /** Semver range of the software it applies to (`appliesTo.software`). */
  appliesTo: string;
  /** ISO time the manifest expires. */
  expiresAt: string;
}

export interface RolloutPorts {
  /** A published patch, or undefined. */
  patch(patchId: string): PublishedPatch | undefined;
  /** Send the signed PatchOffer to a device (MQTT QoS 1); resolves when handed to the broker, rejects when it was not. */
  offer(deviceId: string, patchId: string, rolloutId: string): Promise<void>;
  /**
   * Send the offer already recorded for this device once more, unchanged (PROTOCOL.md: desired state
   * lives in the daemon and agents reconcile on every reconnect; a QoS 1 message to a device that
   * dropped off is lost with its clean session). Not a new offer: nothing new is recorded, and the
   * agent treats a repeated offer idempotently.
   */
  redeliver?(deviceId: string, patchId: string, rolloutId: string): Promise<void>;
  /** Is the device connected right now (offline devices get their offer when they come back). */
  isConnected(deviceId: string): boolean;
  /** RULES.md eligibility incl. an active xcare/xcare_pro subscription; reasons when not. */
  eligibility(deviceId: string, now: number): { eligible: boolean; reasons: string[] };
  /** Current software version from the latest heartbeat, or undefined. */
  softwareVersion(deviceId: string): string | undefined;
  /** Ticket sink for an aborted rollout (src/tickets/types.ts). */
  sink: ConditionSink;
}
