import type { Tier } from '../protocol/names.js';
import type { DeviceRecord } from '../registry/types.js';
import { effectiveTier, subscriptionState } from './fiscal-year.js';

/** Minnovation itself is always an approved installer (RULES.md "Eligibility" 2). */
export const MINNOVATION = 'minnovation';

export interface LiveSoftware {
  softwareVersion: string | null;
  integrity: string | null;
}

export interface EligibilitySettings {
  approvedInstallers: readonly string[];
  /** The digest registered for a software version, or undefined when none is. */
  expectedIntegrity(version: string): string | undefined;
}

export interface Eligibility {
  eligible: boolean;
  /** Every reason the device is not eligible, in rule order; empty when eligible. */
  reasons: string[];
  /** The tier support is given at: `none` once expired. */
  tier: Tier;
}

export function isApprovedInstaller(installer: string, approved: readonly string[]): boolean {
  const name = installer.trim().toLowerCase();
  return name === MINNOVATION || approved.some((a) => a.trim().toLowerCase() === name);
}

/**
 * RULES.md "Eligibility": eligible only when all three hold; every failing rule adds its reason so a ticket can
 * record why. A device that has not reported its software yet cannot prove integrity and is not eligible.
 */
export function eligibility(
  device: Pick<DeviceRecord, 'tier' | 'subscriptionEnd' | 'installer'>,
  live: LiveSoftware | undefined,
  now: number,
  settings: EligibilitySettings,
): Eligibility {
  const reasons: string[] = [];
  // 1. a paid tier that has not expired
  const state = subscriptionState(device, now, 0);
  if (state === 'none') reasons.push('no subscription (tier none)');
  else if (state === 'expired') reasons.push(`subscription expired on ${device.subscriptionEnd}`);
  // 2. installed by Minnovation or an approved contractor
  if (!isApprovedInstaller(device.installer, settings.approvedInstallers)) {
    reasons.push(`installer "${device.installer}" is not on the approved list`);
  }
  // 3. software integrity matches the digest registered for the version it runs
  const version = live?.softwareVersion ?? null;
  if (!version) {
    reasons.push('software version not reported yet');
  } else if (!live?.integrity) {
    reasons.push(`heartbeat reports no integrity digest for version ${version}`);
  } else {
    const expected = settings.expectedIntegrity(version);
    if (!expected) reasons.push(`no integrity digest registered for version ${version}`);
    else if (expected.toLowerCase() !== live.integrity.toLowerCase()) {
      reasons.push(`integrity digest does not match the one registered for version ${version}`);
    }
  }
  return { eligible: reasons.length === 0, reasons, tier: effectiveTier(device, now) };
}
