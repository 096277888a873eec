import { TOPIC_ROOT, type DeviceTopicKind } from '../src/protocol/topics.js';

/**
 * Topic ACLs of PROTOCOL.md "MQTT 3.1.1": a device publishes and subscribes only inside its own
 * prefix `fleet/v1/<id>/`. Pure functions of (deviceId, topic) so they are table-tested and cheap
 * on the publish hot path (string comparisons, no regex, no allocation on the allow path).
 */
export type AclDecision =
  | { allow: true; kind: DeviceKindFromDevice }
  | { allow: false; reason: AclDenyReason };

export type SubscribeDecision = { allow: true } | { allow: false; reason: AclDenyReason };

/** The topics a device may publish to (PROTOCOL.md topic table, direction device -> daemon). */
export type DeviceKindFromDevice = Extract<DeviceTopicKind, 'heartbeat' | 'state' | 'patch/status'>;

export type AclDenyReason =
  | 'outside_own_prefix'
  | 'command_topic'
  | 'unknown_subtopic'
  | 'outside_own_commands'
  | 'wildcard_outside_own_commands'
  | 'not_own_state';

const ROOT_PREFIX = `${TOPIC_ROOT}/`;

/**
 * Length of `fleet/v1/<id>/` when `topic` starts with it, else -1. Compares in place so the
 * hot path allocates no prefix string per message.
 */
function ownPrefixLength(deviceId: string, topic: string): number {
  const idStart = ROOT_PREFIX.length;
  const end = idStart + deviceId.length;
  if (topic.length <= end) return -1;
  if (!topic.startsWith(ROOT_PREFIX) || !topic.startsWith(deviceId, idStart) || topic.charCodeAt(end) !== 0x2f /* / */) return -1;
  return end + 1;
}

/** Publish: only `fleet/v1/<own id>/heartbeat|state|patch/status`; everything else closes the link. */
export function authorizePublish(deviceId: string, topic: string): AclDecision {
  const start = ownPrefixLength(deviceId, topic);
  if (start < 0) return { allow: false, reason: 'outside_own_prefix' };
  // Avoid slicing: compare the suffix in place against the three allowed kinds.
  const rest = topic.length - start;
  if (rest === 9 && topic.endsWith('heartbeat')) return { allow: true, kind: 'heartbeat' };
  if (rest === 5 && topic.endsWith('state')) return { allow: true, kind: 'state' };
  if (rest === 12 && topic.endsWith('patch/status')) return { allow: true, kind: 'patch/status' };
  // cmd/ is daemon -> device only: a device writing there could forge its own patch offers.
  if (topic.startsWith('cmd/', start) || (rest === 3 && topic.endsWith('cmd'))) return { allow: false, reason: 'command_topic' };
  return { allow: false, reason: 'unknown_subtopic' };
}

/**
 * Subscribe: only the device's own command topics, `fleet/v1/<own id>/cmd/#` or anything below
 * `fleet/v1/<own id>/cmd/`. The prefix up to `cmd/` is literal, so a wildcard after it can never
 * reach another device; a wildcard before it (`fleet/v1/+/cmd/#`, `#`) or `$SYS/#` is refused.
 */
export function authorizeSubscribe(deviceId: string, filter: string): SubscribeDecision {
  const start = ownPrefixLength(deviceId, filter);
  if (start < 0) {
    const wildcard = filter.includes('+') || filter.includes('#');
    return { allow: false, reason: wildcard ? 'wildcard_outside_own_commands' : 'outside_own_prefix' };
  }
  if (filter.startsWith('cmd/', start)) return { allow: true };
  // `fleet/v1/<own id>/#` would also match `cmd/`, but it is outside the contract's filter.
  return { allow: false, reason: 'outside_own_commands' };
}

/** Last Will: PROTOCOL.md allows only the device's own `state` topic (the `{"online":false}` will). */
export function authorizeWill(deviceId: string, willTopic: string): SubscribeDecision {
  const decision = authorizePublish(deviceId, willTopic);
  if (decision.allow && decision.kind === 'state') return { allow: true };
  return { allow: false, reason: decision.allow ? 'not_own_state' : decision.reason };
}

/** The kind of an already-authorized device topic, for the in-process delivery path. */
export function deviceTopicKind(deviceId: string, topic: string): DeviceKindFromDevice | undefined {
  const decision = authorizePublish(deviceId, topic);
  return decision.allow ? decision.kind : undefined;
}
