import type { DeviceDirectory, DeviceRecord } from '../../src/registry/types.js';
import type { PublishedPatch, RolloutPorts } from '../../src/rollouts/ports.js';
import type { ConditionReport, ConditionSink, TicketKind } from '../../src/tickets/types.js';
import { ConflictError } from '../../src/errors.js';

/**
 * Real, small implementations of the scheduler's ports for tests and the bench: an in-memory device
 * directory and a port set that records every offer (what a broker would have been handed).
 */
export class MemoryDirectory implements DeviceDirectory {
  private readonly devices = new Map<string, DeviceRecord>();
  private readonly listeners = new Set<(d: DeviceRecord) => void>();

  add(...records: DeviceRecord[]): void {
    for (const r of records) {
      this.devices.set(r.id, r);
      for (const l of this.listeners) l(r);
    }
  }
  revoke(id: string, at: number): void {
    const d = this.devices.get(id);
    if (d) this.add({ ...d, revokedAt: at });
  }
  get(id: string) {
    return this.devices.get(id);
  }
  all() {
    return this.devices.values();
  }
  childrenOf(gatewayId: string) {
    return [...this.devices.values()].filter((d) => d.parent === gatewayId);
  }
  gatewaysOf(customer: string) {
    return [...this.devices.values()].filter((d) => d.type === 'gateway' && d.customer === customer);
  }
  gatewayCount() {
    return [...this.devices.values()].filter((d) => d.type === 'gateway' && d.revokedAt === null).length;
  }
  onChange(listener: (d: DeviceRecord) => void) {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }
}

export class RecordingSink implements ConditionSink {
  readonly raised: ConditionReport[] = [];
  raise(report: ConditionReport): void {
    this.raised.push(report);
  }
  clear(_kind: TicketKind, _subject: string, _reason: string): void {}
  hasOpen(kinds: readonly TicketKind[], subject: string): boolean {
    return this.raised.some((r) => kinds.includes(r.kind) && r.subject === subject);
  }
}

export class RecordingPorts implements RolloutPorts {
  readonly patches = new Map<string, PublishedPatch>();
  readonly connected = new Set<string>();
  readonly versions = new Map<string, string>();
  readonly ineligible = new Map<string, string>();
  /** Every send (first offers, retries, and sends of recorded offers). */
  readonly offers: { deviceId: string; patchId: string; rolloutId: string }[] = [];
  /** The one offer record per (device, patch), as the patch service keeps it: `device|patch` -> rollout or null. */
  readonly records = new Map<string, string | null>();
  readonly retries: { deviceId: string; patchId: string; rolloutId: string }[] = [];
  readonly cancels: { deviceId: string; patchId: string; rolloutId: string }[] = [];
  readonly sink = new RecordingSink();
  /** Replace to make sends fail or hang (crash simulation). */
  send: (deviceId: string, patchId: string, rolloutId: string) => Promise<void> = async () => {};

  patch(id: string) {
    return this.patches.get(id);
  }
  recordOffers(items: readonly { deviceId: string; retry: boolean }[], patchId: string, rolloutId: string, now: number): Map<string, Error> {
    const refused = new Map<string, Error>();
    for (const { deviceId, retry } of items) {
      try {
        this.recordOffer(deviceId, patchId, rolloutId, now, retry);
      } catch (err) {
        if (!(err instanceof ConflictError)) throw err;
        refused.set(deviceId, err);
      }
    }
    return refused;
  }
  recordOffer(deviceId: string, patchId: string, rolloutId: string | null, _now: number, retry: boolean): void {
    const key = `${deviceId}|${patchId}`;
    if (retry && this.records.has(key)) {
      this.retries.push({ deviceId, patchId, rolloutId: rolloutId ?? '' });
      return;
    }
    if (this.records.has(key)) throw new ConflictError(`device ${deviceId} was already offered ${patchId}`);
    this.records.set(key, rolloutId);
  }
  async offer(deviceId: string, patchId: string, rolloutId: string): Promise<void> {
    await this.send(deviceId, patchId, rolloutId);
    this.offers.push({ deviceId, patchId, rolloutId });
  }
  async cancel(deviceId: string, patchId: string, rolloutId: string): Promise<void> {
    this.cancels.push({ deviceId, patchId, rolloutId });
  }
  offeredDevices(patchId: string): Map<string, string | null> {
    const out = new Map<string, string | null>();
    for (const [key, by] of this.records) {
      const [deviceId, p] = key.split('|');
      if (p === patchId) out.set(deviceId!, by);
    }
    return out;
  }
  isConnected(id: string) {
    return this.connected.has(id);
  }
  eligibility(id: string) {
    const why = this.ineligible.get(id);
    return why ? { eligible: false, reasons: [why] } : { eligible: true, reasons: [] };
  }
  softwareVersion(id: string) {
    return this.versions.get(id);
  }
  offeredIds(): string[] {
    return this.offers.map((o) => o.deviceId);
  }
}

export const examplePatch: PublishedPatch = { id: 'gw-2.3.2', version: '2.3.2', types: ['gateway', 'sensor'], appliesTo: '>=2.0.0 <2.3.2', expiresAt: '2027-02-24T10:00:00Z' };

export function device(id: string, over: Partial<DeviceRecord> = {}): DeviceRecord {
  return {
    id, type: 'gateway', parent: null, customer: 'acme', installer: 'minnovation', tier: 'xcare',
    subscriptionStart: '2026-01-01', subscriptionEnd: '2027-06-30', tags: [], createdAt: 0, revokedAt: null, ...over,
  };
}
