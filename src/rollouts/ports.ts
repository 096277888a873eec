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
  /**
   * Record that these devices are offered this patch: the ONE record of "offered" per device and patch,
   * whoever offers (issue 9 fault 6). Called inside the scheduler's transaction, so each device's `offered`
   * state and this record commit together, before anything is sent. Returns the error of each device that
   * was already offered this patch while `retry` is false (nothing recorded for it); with `retry` the
   * existing record stands and the device's patch state is reset to `offered` for another try. One call per
   * wave: on PostgreSQL each statement is a round trip of the event loop.
   */
  recordOffers(items: readonly { deviceId: string; retry: boolean }[], patchId: string, rolloutId: string, now: number): ReadonlyMap<string, Error>;
  /**
   * Send the recorded PatchOffer (MQTT QoS 1) if the device can receive it now; otherwise it is sent when the
   * device's subscription is in place (PROTOCOL.md "Delivery of daemon -> device commands"). Rejects when the
   * broker refused it; the offer stays recorded and is re-sent at the device's next ready signal.
   */
  offer(deviceId: string, patchId: string, rolloutId: string): Promise<void>;
  /** Ask the device to cancel its job (PROTOCOL.md "PatchCancel"), recorded and re-sent until it ends. */
  cancel?(deviceId: string, patchId: string, rolloutId: string): Promise<void>;
  /** Devices already offered this patch (by a person or any rollout) -> the rollout that did, or null. */
  offeredDevices(patchId: string): ReadonlyMap<string, string | null>;
  /**
   * Can the device receive a command right now: connected AND subscribed to its own `cmd/` topic in this
   * connection (issue 9 fault 1). Devices that cannot get their offer at their next ready signal.
   */
  isConnected(deviceId: string): boolean;
  /** RULES.md eligibility incl. an active xcare/xcare_pro subscription; reasons when not. */
  eligibility(deviceId: string, now: number): { eligible: boolean; reasons: string[] };
  /** Current software version from the latest heartbeat, or undefined. */
  softwareVersion(deviceId: string): string | undefined;
  /** Ticket sink for an aborted or failed rollout, and to ask whether a device has an open loss ticket (soak). */
  sink: ConditionSink;
}
