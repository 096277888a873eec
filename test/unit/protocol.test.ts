import { describe, it, expect } from 'vitest';
import { parseDeviceTopic, topics } from '../../src/protocol/topics.js';
import { isDeviceId } from '../../src/protocol/names.js';

describe('protocol names and topics', () => {
  it.each([
    ['gw-1', true],
    ['A', true],
    ['a.b_c-d', true],
    ['a'.repeat(64), true],
    ['a'.repeat(65), false],
    ['-gw', false],
    ['gw/1', false],
    ['gw+', false],
    ['', false],
    ['gw 1', false],
  ])('device id %s valid=%s', (id, valid) => {
    expect(isDeviceId(id)).toBe(valid);
  });

  it.each([
    ['fleet/v1/gw-1/heartbeat', { deviceId: 'gw-1', kind: 'heartbeat' }],
    ['fleet/v1/gw-1/state', { deviceId: 'gw-1', kind: 'state' }],
    ['fleet/v1/gw-1/patch/status', { deviceId: 'gw-1', kind: 'patch/status' }],
    ['fleet/v1/gw-1/cmd/patch', { deviceId: 'gw-1', kind: 'cmd/patch' }],
    ['fleet/v1/gw-1/other', undefined],
    ['fleet/v1/+/heartbeat', undefined],
    ['fleet/v2/gw-1/heartbeat', undefined],
    ['$SYS/broker/uptime', undefined],
    ['fleet/v1/gw-1/heartbeat/extra', undefined],
  ])('parses %s', (topic, expected) => {
    expect(parseDeviceTopic(topic)).toEqual(expected);
  });

  it('builds the topics of PROTOCOL.md', () => {
    expect([topics.heartbeat('d'), topics.state('d'), topics.patchStatus('d'), topics.cmdPatch('d'), topics.cmdFilter('d')]).toEqual([
      'fleet/v1/d/heartbeat',
      'fleet/v1/d/state',
      'fleet/v1/d/patch/status',
      'fleet/v1/d/cmd/patch',
      'fleet/v1/d/cmd/#',
    ]);
  });
});
