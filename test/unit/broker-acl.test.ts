import { describe, it, expect } from 'vitest';
import { authorizePublish, authorizeSubscribe, authorizeWill, deviceTopicKind } from '../../broker/acl.js';
import { checkConnectIdentity } from '../../broker/connect-policy.js';

const ID = 'gw-001';

describe('authorizePublish: a device publishes only heartbeat, state and patch/status under its own prefix', () => {
  const rows: Array<[string, string, boolean, string]> = [
    ['own heartbeat', `fleet/v1/${ID}/heartbeat`, true, 'heartbeat'],
    ['own state', `fleet/v1/${ID}/state`, true, 'state'],
    ['own patch status', `fleet/v1/${ID}/patch/status`, true, 'patch/status'],
    ['another device heartbeat', 'fleet/v1/gw-002/heartbeat', false, 'outside_own_prefix'],
    ['device id as a prefix of another id', `fleet/v1/${ID}x/heartbeat`, false, 'outside_own_prefix'],
    ['id of which ours is a prefix', 'fleet/v1/gw-00/heartbeat', false, 'outside_own_prefix'],
    ['own command topic', `fleet/v1/${ID}/cmd/patch`, false, 'command_topic'],
    ['own cmd level itself', `fleet/v1/${ID}/cmd`, false, 'command_topic'],
    ['own cmd subtopic', `fleet/v1/${ID}/cmd/other`, false, 'command_topic'],
    ['unknown own subtopic', `fleet/v1/${ID}/telemetry`, false, 'unknown_subtopic'],
    ['heartbeat with extra level', `fleet/v1/${ID}/heartbeat/x`, false, 'unknown_subtopic'],
    ['patch without status', `fleet/v1/${ID}/patch`, false, 'unknown_subtopic'],
    ['state with a trailing slash', `fleet/v1/${ID}/state/`, false, 'unknown_subtopic'],
    ['case differs', `fleet/v1/${ID}/Heartbeat`, false, 'unknown_subtopic'],
    ['own prefix only', `fleet/v1/${ID}/`, false, 'unknown_subtopic'],
    ['$SYS', '$SYS/broker/heartbeat', false, 'outside_own_prefix'],
    ['other protocol version', `fleet/v2/${ID}/heartbeat`, false, 'outside_own_prefix'],
    ['leading slash', `/fleet/v1/${ID}/heartbeat`, false, 'outside_own_prefix'],
    ['top level topic', 'heartbeat', false, 'outside_own_prefix'],
  ];
  it.each(rows)('%s: %s -> %s', (_name, topic, allow, detail) => {
    const decision = authorizePublish(ID, topic);
    expect(decision.allow).toBe(allow);
    if (decision.allow) expect(decision.kind).toBe(detail);
    else expect(decision.reason).toBe(detail);
  });
});

describe('authorizeSubscribe: only the device\'s own cmd/ topics', () => {
  const rows: Array<[string, string, boolean, string?]> = [
    ['own cmd/#', `fleet/v1/${ID}/cmd/#`, true],
    ['own cmd/patch', `fleet/v1/${ID}/cmd/patch`, true],
    ['own cmd/+', `fleet/v1/${ID}/cmd/+`, true],
    ['own cmd/ with empty level', `fleet/v1/${ID}/cmd/`, true],
    ['every device commands', 'fleet/v1/+/cmd/#', false, 'wildcard_outside_own_commands'],
    ['everything', '#', false, 'wildcard_outside_own_commands'],
    ['$SYS', '$SYS/#', false, 'wildcard_outside_own_commands'],
    ['another device cmd', 'fleet/v1/gw-002/cmd/#', false, 'wildcard_outside_own_commands'],
    ['another device cmd/patch, no wildcard', 'fleet/v1/gw-002/cmd/patch', false, 'outside_own_prefix'],
    ['own whole prefix', `fleet/v1/${ID}/#`, false, 'outside_own_commands'],
    ['own heartbeat', `fleet/v1/${ID}/heartbeat`, false, 'outside_own_commands'],
    ['own cmd level itself', `fleet/v1/${ID}/cmd`, false, 'outside_own_commands'],
    ['own prefix with + in place of cmd', `fleet/v1/${ID}/+/patch`, false, 'outside_own_commands'],
    ['fleet wide', 'fleet/v1/#', false, 'wildcard_outside_own_commands'],
    ['id as prefix of another id', `fleet/v1/${ID}x/cmd/#`, false, 'wildcard_outside_own_commands'],
    ['shared subscription', `$share/g/fleet/v1/${ID}/cmd/#`, false, 'wildcard_outside_own_commands'],
  ];
  it.each(rows)('%s: %s -> %s', (_name, filter, allow, reason) => {
    const decision = authorizeSubscribe(ID, filter);
    expect(decision.allow).toBe(allow);
    if (!decision.allow) expect(decision.reason).toBe(reason);
  });
});

describe('authorizeWill: only the device\'s own state topic', () => {
  const rows: Array<[string, string, boolean, string?]> = [
    ['own state', `fleet/v1/${ID}/state`, true],
    ['another device state', 'fleet/v1/gw-002/state', false, 'outside_own_prefix'],
    ['own heartbeat', `fleet/v1/${ID}/heartbeat`, false, 'not_own_state'],
    ['own patch status', `fleet/v1/${ID}/patch/status`, false, 'not_own_state'],
    ['own cmd', `fleet/v1/${ID}/cmd/patch`, false, 'command_topic'],
    ['$SYS', '$SYS/x', false, 'outside_own_prefix'],
  ];
  it.each(rows)('%s: %s -> %s', (_name, topic, allow, reason) => {
    const decision = authorizeWill(ID, topic);
    expect(decision.allow).toBe(allow);
    if (!decision.allow) expect(decision.reason).toBe(reason);
  });
});

describe('deviceTopicKind', () => {
  it('maps an authorized topic to its kind', () => {
    expect(deviceTopicKind(ID, `fleet/v1/${ID}/patch/status`)).toBe('patch/status');
  });
  it('is undefined for a topic the device may not publish', () => {
    expect(deviceTopicKind(ID, `fleet/v1/${ID}/cmd/patch`)).toBeUndefined();
  });
});

describe('checkConnectIdentity: clientId == username == a valid device id, MQTT 3.1.1', () => {
  const pw = Buffer.from('token-123');
  it('accepts a well-formed CONNECT and returns the token', () => {
    expect(checkConnectIdentity({ clientId: ID, username: ID, password: pw, protocolVersion: 4 })).toEqual({ ok: true, deviceId: ID, token: 'token-123' });
  });
  it('accepts MQTT 3.1 (protocol level 3), which aedes speaks with the same packets', () => {
    expect(checkConnectIdentity({ clientId: ID, username: ID, password: pw, protocolVersion: 3 }).ok).toBe(true);
  });
  const refusals: Array<[string, { clientId: string; username: string | undefined; password: Buffer | undefined; protocolVersion: number }, string]> = [
    ['MQTT 5', { clientId: ID, username: ID, password: pw, protocolVersion: 5 }, 'protocol_version'],
    ['clientId differs from username (spoofing)', { clientId: 'gw-002', username: ID, password: pw, protocolVersion: 4 }, 'client_id_mismatch'],
    ['generated clientId (empty in CONNECT)', { clientId: 'aedes_1234', username: ID, password: pw, protocolVersion: 4 }, 'client_id_mismatch'],
    ['no username', { clientId: ID, username: undefined, password: pw, protocolVersion: 4 }, 'bad_device_id'],
    ['username with a slash', { clientId: 'a/b', username: 'a/b', password: pw, protocolVersion: 4 }, 'bad_device_id'],
    ['username with a wildcard', { clientId: 'gw+', username: 'gw+', password: pw, protocolVersion: 4 }, 'bad_device_id'],
    ['username starting with a dot', { clientId: '.gw', username: '.gw', password: pw, protocolVersion: 4 }, 'bad_device_id'],
    ['username of 65 characters', { clientId: 'a'.repeat(65), username: 'a'.repeat(65), password: pw, protocolVersion: 4 }, 'bad_device_id'],
    ['no password', { clientId: ID, username: ID, password: undefined, protocolVersion: 4 }, 'missing_credentials'],
    ['empty password', { clientId: ID, username: ID, password: Buffer.alloc(0), protocolVersion: 4 }, 'missing_credentials'],
  ];
  it.each(refusals)('refuses %s', (_name, connect, reason) => {
    expect(checkConnectIdentity(connect)).toEqual({ ok: false, reason });
  });
});
