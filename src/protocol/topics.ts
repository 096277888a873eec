import { isDeviceId } from './names.js';

/** Topic names of PROTOCOL.md. Every device topic lives under `fleet/v1/<deviceId>/`. */
export const TOPIC_ROOT = 'fleet/v1';

export type DeviceTopicKind = 'heartbeat' | 'state' | 'patch/status' | 'cmd/patch';

export const topics = {
  prefix: (deviceId: string) => `${TOPIC_ROOT}/${deviceId}/`,
  heartbeat: (deviceId: string) => `${TOPIC_ROOT}/${deviceId}/heartbeat`,
  state: (deviceId: string) => `${TOPIC_ROOT}/${deviceId}/state`,
  patchStatus: (deviceId: string) => `${TOPIC_ROOT}/${deviceId}/patch/status`,
  cmdPatch: (deviceId: string) => `${TOPIC_ROOT}/${deviceId}/cmd/patch`,
  /** What a device subscribes to: its own commands. */
  cmdFilter: (deviceId: string) => `${TOPIC_ROOT}/${deviceId}/cmd/#`,
};

/** Subscriptions the daemon itself makes to receive what devices publish. */
export const DAEMON_FILTERS = {
  heartbeat: `${TOPIC_ROOT}/+/heartbeat`,
  state: `${TOPIC_ROOT}/+/state`,
  patchStatus: `${TOPIC_ROOT}/+/patch/status`,
} as const;

export interface ParsedTopic {
  deviceId: string;
  kind: DeviceTopicKind;
}

const KINDS: ReadonlySet<string> = new Set(['heartbeat', 'state', 'patch/status', 'cmd/patch']);

/** Parse `fleet/v1/<id>/<kind>`; undefined for anything that is not a known device topic. */
export function parseDeviceTopic(topic: string): ParsedTopic | undefined {
  if (!topic.startsWith(`${TOPIC_ROOT}/`)) return undefined;
  const rest = topic.slice(TOPIC_ROOT.length + 1);
  const slash = rest.indexOf('/');
  if (slash <= 0) return undefined;
  const deviceId = rest.slice(0, slash);
  const kind = rest.slice(slash + 1);
  if (!isDeviceId(deviceId) || !KINDS.has(kind)) return undefined;
  return { deviceId, kind: kind as DeviceTopicKind };
}
