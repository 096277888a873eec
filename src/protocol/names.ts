/** Names from PROTOCOL.md "Names". Dependency-free: the agent imports this. */
export const DEVICE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export const DEVICE_TYPES = ['gateway', 'sensor'] as const;
export type DeviceType = (typeof DEVICE_TYPES)[number];

export const TIERS = ['none', 'xcare', 'xcare_pro'] as const;
export type Tier = (typeof TIERS)[number];

export const PATCH_STATES = [
  'downloading',
  'verifying',
  'installing',
  'installed',
  'failed',
  'rolled_back',
  'rejected',
  // PROTOCOL.md "PatchCancel": the agent stopped a download or an install before its point of no return.
  'cancelled',
] as const;
export type PatchState = (typeof PATCH_STATES)[number];

/**
 * Bounds of a heartbeat's announced `intervalS` (issue 11 fault 6: `1e-300` was accepted and gave its
 * device a loss ticket while connected). An agent configured to beat faster announces MIN_INTERVAL_S.
 */
export const MIN_INTERVAL_S = 1;
export const MAX_INTERVAL_S = 86_400;

export function isDeviceId(value: unknown): value is string {
  return typeof value === 'string' && DEVICE_ID_PATTERN.test(value);
}

/**
 * Progress rank of each PatchStatus state, the one place patch-status order is defined (STYLE.md "Each fact
 * once"): a late or repeated status of a lower rank never moves a device backwards. Final states share the
 * top rank; `offered` (daemon-side only, before any status) is below everything a device reports.
 */
export const PATCH_STATE_RANK: Readonly<Record<PatchState | 'offered', number>> = {
  offered: 0,
  downloading: 1,
  verifying: 2,
  installing: 3,
  installed: 4,
  failed: 4,
  rolled_back: 4,
  rejected: 4,
  cancelled: 4,
};

/** Final PatchStatus states: the job on the device has ended (PROTOCOL.md "PatchStatus"). */
export const FINAL_PATCH_STATES: ReadonlySet<string> = new Set(['installed', 'failed', 'rolled_back', 'rejected', 'cancelled']);

/** States during which the device may restart on its own (install, or the check of the new version). */
export const INSTALLING_PATCH_STATES: ReadonlySet<string> = new Set(['verifying', 'installing']);
