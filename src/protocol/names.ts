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
] as const;
export type PatchState = (typeof PATCH_STATES)[number];

export function isDeviceId(value: unknown): value is string {
  return typeof value === 'string' && DEVICE_ID_PATTERN.test(value);
}
