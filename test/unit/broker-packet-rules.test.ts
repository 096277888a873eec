import { describe, it, expect } from 'vitest';
import { checkFixedHeader, checkPacket, checkSequence, checkTopicFilter, checkTopicName, decodeMqttString } from '../../broker/packet-rules.js';
import { PacketLengthScanner } from '../../broker/packet-limit.js';
import { checkConnectIdentity, MAX_TOKEN_BYTES } from '../../broker/connect-policy.js';
import { connectPacket, mqttPacket, mqttString } from '../helpers/mqtt-packets.js';

/** The MQTT 3.1.1 "MUST close" rules aedes does not enforce (issue 11 fault 5), as pure table tests. */

const bodyOf = (packet: Buffer) => {
  // Skip the fixed header: type byte and the remaining-length varint.
  let i = 1;
  while (packet[i]! & 0x80) i++;
  return packet.subarray(i + 1);
};

function connect(flags: number, fields: Buffer[]): Buffer {
  return bodyOf(mqttPacket(0x10, Buffer.concat([mqttString('MQTT'), Buffer.from([4, flags, 0, 60]), ...fields])));
}

describe('CONNECT rules', () => {
  const s = mqttString;
  it.each<[string, Buffer, string | undefined]>([
    ['a plain CONNECT with user and password', bodyOf(connectPacket('gw-1', 'gw-1', 'tok')), undefined],
    ['flags 0xde: Will QoS 3', connect(0xde, [s('gw-1'), s('fleet/v1/gw-1/state'), s('x'), s('gw-1'), s('tok')]), 'MQTT-3.1.2-14'],
    ['a Will at QoS 2, retained', connect(0xf6, [s('gw-1'), s('fleet/v1/gw-1/state'), s('x'), s('gw-1'), s('tok')]), undefined],
    ['reserved bit 0', connect(0x03, [s('gw-1')]), 'MQTT-3.1.2-3'],
    ['Will QoS without Will', connect(0x0a, [s('gw-1')]), 'MQTT-3.1.2-13'],
    ['Will Retain without Will', connect(0x22, [s('gw-1')]), 'MQTT-3.1.2-15'],
    ['password without user name', connect(0x42, [s('gw-1'), s('tok')]), 'MQTT-3.1.2-22'],
    ['U+0000 in the client id', connect(0x02, [s('gw\u00001')]), 'MQTT-1.5.3-2'],
    ['U+0000 in the user name', connect(0x82, [s('gw-1'), s('gw\u0000')]), 'MQTT-1.5.3-2'],
    ['a Will topic with +', connect(0x06, [s('gw-1'), s('fleet/+/x'), s('x')]), 'MQTT-4.7.1-1'],
    ['an empty Will topic', connect(0x06, [s('gw-1'), s(''), s('x')]), 'MQTT-4.7.3-1'],
    ['a string running past the end', connect(0x02, [Buffer.from([0, 9, 0x41])]), 'MQTT-1.5.3'],
    ['a missing password', connect(0xc2, [s('gw-1'), s('gw-1')]), 'MQTT-1.5.3'],
    ['trailing bytes', connect(0x02, [s('gw-1'), Buffer.from([0])]), 'MQTT-1.5.3'],
    ['MQTT 3.1 named MQTT', bodyOf(mqttPacket(0x10, Buffer.concat([s('MQTT'), Buffer.from([3, 0x02, 0, 60]), s('gw-1')]))), 'MQTT-3.1.2-1'],
    ['MQTT 5 is left to aedes (CONNACK 1)', bodyOf(mqttPacket(0x10, Buffer.concat([s('MQTT'), Buffer.from([5, 0xde, 0, 60, 0]), s('gw-1')]))), undefined],
  ])('%s -> %s', (_name, body, rule) => {
    expect(checkPacket(1, body)).toBe(rule);
  });
});

describe('strings, filters, topic names', () => {
  it.each<[string, number[], string | undefined]>([
    ['ASCII', [0x61, 0x62], undefined],
    ['2-byte é', [0xc3, 0xa9], undefined],
    ['4-byte emoji', [0xf0, 0x9f, 0x98, 0x80], undefined],
    ['U+0000', [0x61, 0x00], 'MQTT-1.5.3-2'],
    ['a lone continuation byte', [0x80], 'MQTT-1.5.3-1'],
    ['an overlong /', [0xc0, 0xaf], 'MQTT-1.5.3-1'],
    ['an encoded surrogate', [0xed, 0xa0, 0x80], 'MQTT-1.5.3-1'],
    ['a truncated sequence', [0xe2, 0x82], 'MQTT-1.5.3-1'],
    ['beyond U+10FFFF', [0xf4, 0x90, 0x80, 0x80], 'MQTT-1.5.3-1'],
  ])('%s', (_name, bytes, rule) => {
    const result = decodeMqttString(Uint8Array.from(bytes));
    expect(result.ok ? undefined : result.rule).toBe(rule);
  });

  it.each<[string, string | undefined]>([
    ['fleet/v1/gw-1/cmd/#', undefined],
    ['#', undefined],
    ['+', undefined],
    ['+/+/#', undefined],
    ['/', undefined],
    ['', 'MQTT-4.7.3-1'],
    ['a/#/b', 'MQTT-4.7.1-2'],
    ['a#', 'MQTT-4.7.1-2'],
    ['a/b#', 'MQTT-4.7.1-2'],
    ['a+/b', 'MQTT-4.7.1-3'],
    ['a/+b', 'MQTT-4.7.1-3'],
  ])('filter %j -> %s', (filter, rule) => {
    expect(checkTopicFilter(filter)).toBe(rule);
  });

  it('topic names carry no wildcard and are not empty', () => {
    expect(checkTopicName('fleet/v1/gw-1/state')).toBeUndefined();
    expect(checkTopicName('fleet/#')).toBe('MQTT-4.7.1-1');
    expect(checkTopicName('')).toBe('MQTT-4.7.3-1');
  });
});

describe('SUBSCRIBE / UNSUBSCRIBE and the sequence', () => {
  const sub = (id: number, ...entries: Buffer[]) => Buffer.concat([Buffer.from([id >> 8, id & 0xff]), ...entries]);
  it.each<[string, number, Buffer, string | undefined]>([
    ['one filter', 8, sub(1, mqttString('a/b'), Buffer.from([1])), undefined],
    ['packet id 0', 8, sub(0, mqttString('a/b'), Buffer.from([1])), 'MQTT-2.3.1-1'],
    ['no filter', 8, sub(1), 'MQTT-3.8.3-3'],
    ['QoS 3 requested', 8, sub(1, mqttString('a'), Buffer.from([3])), 'MQTT-3.8.3-4'],
    ['reserved option bits', 8, sub(1, mqttString('a'), Buffer.from([0x41])), 'MQTT-3.8.3-4'],
    ['a missing options byte', 8, sub(1, mqttString('a')), 'MQTT-1.5.3'],
    ['unsubscribe, no filter', 10, sub(1), 'MQTT-3.10.3-2'],
    ['unsubscribe U+0000', 10, sub(1, mqttString('a\u0000')), 'MQTT-1.5.3-2'],
  ])('%s', (_name, type, body, rule) => {
    expect(checkPacket(type, body)).toBe(rule);
  });

  it.each<[number, number, string | undefined]>([
    [1, 0, undefined],
    [3, 0, 'MQTT-3.1.0-1'],
    [1, 1, 'MQTT-3.1.0-2'],
    [3, 1, undefined],
    [12, 4, undefined],
    [2, 1, 'MQTT-2.2.1'],
    [9, 1, 'MQTT-2.2.1'],
    [0, 1, 'MQTT-2.2.1'],
    [15, 1, 'MQTT-2.2.1'],
  ])('type %d as packet #%d -> %s', (type, index, rule) => {
    expect(checkSequence(type, index)).toBe(rule);
  });

  it.each<[string, number, number, string | undefined]>([
    ['PUBLISH QoS 1 retained dup', 3, 0x0b, undefined],
    ['PUBLISH with both QoS bits', 3, 0x06, 'MQTT-3.3.1-4'],
    ['SUBSCRIBE 0010', 8, 0x02, undefined],
    ['SUBSCRIBE 0000', 8, 0x00, 'MQTT-2.2.2-1'],
    ['PUBREL 0010', 6, 0x02, undefined],
    ['UNSUBSCRIBE 0011', 10, 0x03, 'MQTT-2.2.2-1'],
    ['PINGREQ 0000', 12, 0x00, undefined],
    ['PINGREQ 0001', 12, 0x01, 'MQTT-2.2.2-1'],
    ['CONNECT 1000', 1, 0x08, 'MQTT-2.2.2-1'],
    ['DISCONNECT 0000', 14, 0x00, undefined],
  ])('fixed header: %s', (_name, type, flags, rule) => {
    expect(checkFixedHeader(type, flags)).toBe(rule);
  });

  it('the scanner checks a CONNECT split across chunks before its last byte passes', () => {
    const packet = mqttPacket(0x10, connect(0xde, [mqttString('gw-1'), mqttString('t'), mqttString('x'), mqttString('gw-1'), mqttString('tok')]));
    const scanner = new PacketLengthScanner(65_536, true);
    for (let i = 0; i < packet.length - 1; i++) expect(scanner.feed(packet.subarray(i, i + 1))).toEqual({ ok: true });
    expect(scanner.feed(packet.subarray(packet.length - 1))).toEqual({ ok: false, reason: 'protocol', rule: 'MQTT-3.1.2-14' });
  });

  it('without rules the scanner checks sizes only (benchmarks, size tests)', () => {
    expect(new PacketLengthScanner(65_536).feed(Buffer.from([0x30, 0x00, 0x30, 0x00]))).toEqual({ ok: true });
  });
});

describe('CONNECT identity: tokens an unauthenticated peer cannot make us hash', () => {
  const base = { clientId: 'gw-1', username: 'gw-1', protocolVersion: 4 };
  it('refuses a password longer than MAX_TOKEN_BYTES before any scrypt', () => {
    expect(checkConnectIdentity({ ...base, password: Buffer.alloc(MAX_TOKEN_BYTES + 1, 0x61) })).toEqual({ ok: false, reason: 'malformed_token' });
    expect(checkConnectIdentity({ ...base, password: Buffer.alloc(MAX_TOKEN_BYTES, 0x61) }).ok).toBe(true);
  });
  it('refuses a password that is not UTF-8', () => {
    expect(checkConnectIdentity({ ...base, password: Buffer.from([0xff, 0xfe]) })).toEqual({ ok: false, reason: 'malformed_token' });
  });
});
