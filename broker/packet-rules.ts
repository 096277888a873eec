/**
 * The MQTT 3.1.1 "MUST close the connection" rules that aedes 1.x and its parser (mqtt-packet) do not
 * enforce, checked on the raw bytes of a packet before aedes sees its last byte (issue 11 fault 5: a
 * CONNECT with Will QoS 3 got CONNACK 0; a SUBSCRIBE to a filter holding U+0000 was granted).
 *
 * Only the packets that carry the strings and flags in question are inspected: CONNECT, SUBSCRIBE and
 * UNSUBSCRIBE, all rare and bounded by `mqtt.maxPacketBytes`. PUBLISH topic names need no check here:
 * the ACL accepts only the exact topics of the device's own prefix, so a topic with U+0000, a wildcard or
 * ill-formed UTF-8 is already refused, counted and closed as an ACL violation.
 *
 * Each check returns the spec clause it enforces (`MQTT-3.1.2-14`), which is logged and counted in
 * `fleet_mqtt_protocol_violations_total{rule}`; `undefined` means the packet may pass.
 */
export type Rule = string;

/**
 * Every clause the checks below (and the connection guard) can report, so that
 * `fleet_mqtt_protocol_violations_total{rule}` exports each at 0 from start (issue 10: rate() misses a
 * counter's first increment otherwise). A clause added to a check belongs here too.
 */
export const PROTOCOL_RULES: readonly Rule[] = [
  'MQTT-1.5.3', 'MQTT-1.5.3-1', 'MQTT-1.5.3-2', 'MQTT-2.2.1', 'MQTT-2.2.2-1', 'MQTT-2.2.3', 'MQTT-2.3.1-1',
  'MQTT-3.1.0-1', 'MQTT-3.1.0-2', 'MQTT-3.1.2-1', 'MQTT-3.1.2-3', 'MQTT-3.1.2-13', 'MQTT-3.1.2-14',
  'MQTT-3.1.2-15', 'MQTT-3.1.2-22', 'MQTT-3.3.1-4', 'MQTT-3.8.3-3', 'MQTT-3.8.3-4', 'MQTT-3.10.3-2',
  'MQTT-4.7.1-1', 'MQTT-4.7.1-2', 'MQTT-4.7.1-3', 'MQTT-4.7.3-1',
];

/** Control packet types (MQTT 3.1.1 §2.2.1). */
export const PacketType = { CONNECT: 1, SUBSCRIBE: 8, UNSUBSCRIBE: 10 } as const;

/** Types a client never sends (0 and 15 reserved; CONNACK, SUBACK, UNSUBACK, PINGRESP go server -> client). */
const NOT_FROM_CLIENT = new Set([0, 2, 9, 11, 13, 15]);

/** True for the types whose whole body checkPacket needs. */
export function wantsBody(type: number): boolean {
  return type === PacketType.CONNECT || type === PacketType.SUBSCRIBE || type === PacketType.UNSUBSCRIBE;
}

/**
 * Rules on the sequence and type alone, checked on the fixed header: the first packet is CONNECT
 * [MQTT-3.1.0-1], a second CONNECT is a violation [MQTT-3.1.0-2], and a client sends no reserved or
 * server-only type [MQTT-2.2.1] (mqtt-packet would parse a CONNACK from a client as if it were ours).
 */
export function checkSequence(type: number, packetIndex: number): Rule | undefined {
  if (packetIndex === 0 && type !== PacketType.CONNECT) return 'MQTT-3.1.0-1';
  if (packetIndex > 0 && type === PacketType.CONNECT) return 'MQTT-3.1.0-2';
  if (NOT_FROM_CLIENT.has(type)) return 'MQTT-2.2.1';
  return undefined;
}

/** Types whose fixed-header flags are reserved as 0010 (§2.2.2); every other type but PUBLISH has 0000. */
const FLAGS_0010 = new Set([6, 8, 10]);
const PUBLISH = 3;

/**
 * The fixed header's flag bits [MQTT-2.2.2-1, -2]: reserved bits must have the listed value, and a
 * PUBLISH must not have both QoS bits set [MQTT-3.3.1-4]. mqtt-packet closes on these too, but
 * without our count; checked here so each is counted as the rule it breaks.
 */
export function checkFixedHeader(type: number, flags: number): Rule | undefined {
  if (type === PUBLISH) return (flags & 0x06) === 0x06 ? 'MQTT-3.3.1-4' : undefined;
  const expected = FLAGS_0010.has(type) ? 0x02 : 0x00;
  return flags === expected ? undefined : 'MQTT-2.2.2-1';
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Reads the length-prefixed fields of a packet body; every read past the end is a malformed packet. */
class BodyReader {
  pos = 0;
  constructor(private readonly body: Uint8Array) {}

  get left(): number {
    return this.body.length - this.pos;
  }

  byte(): number | undefined {
    return this.pos < this.body.length ? this.body[this.pos++] : undefined;
  }

  u16(): number | undefined {
    if (this.left < 2) return undefined;
    const v = (this.body[this.pos]! << 8) | this.body[this.pos + 1]!;
    this.pos += 2;
    return v;
  }

  bytes(): Uint8Array | undefined {
    const len = this.u16();
    if (len === undefined || this.left < len) return undefined;
    const out = this.body.subarray(this.pos, this.pos + len);
    this.pos += len;
    return out;
  }
}

/**
 * A UTF-8 encoded string field [MQTT 3.1.1 §1.5.3]: well-formed UTF-8 with no surrogate code points
 * [MQTT-1.5.3-1] and no U+0000 [MQTT-1.5.3-2]. Returns the string, or the rule it breaks.
 */
export function decodeMqttString(bytes: Uint8Array): { ok: true; value: string } | { ok: false; rule: Rule } {
  let value: string;
  try {
    // fatal: ill-formed sequences, overlong forms and encoded surrogates (ED A0..BF xx) all throw.
    value = utf8.decode(bytes);
  } catch {
    return { ok: false, rule: 'MQTT-1.5.3-1' };
  }
  if (value.includes('\u0000')) return { ok: false, rule: 'MQTT-1.5.3-2' };
  return { ok: true, value };
}

/** A topic filter: non-empty [MQTT-4.7.3-1], `#` last and alone in its level [MQTT-4.7.1-2], `+` alone in its level [MQTT-4.7.1-3]. */
export function checkTopicFilter(filter: string): Rule | undefined {
  if (filter.length === 0) return 'MQTT-4.7.3-1';
  const levels = filter.split('/');
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i]!;
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) return 'MQTT-4.7.1-2';
    if (level.includes('+') && level !== '+') return 'MQTT-4.7.1-3';
  }
  return undefined;
}

/** A topic name (Will topic): non-empty [MQTT-4.7.3-1], no wildcard [MQTT-4.7.1-1]. */
export function checkTopicName(topic: string): Rule | undefined {
  if (topic.length === 0) return 'MQTT-4.7.3-1';
  if (topic.includes('#') || topic.includes('+')) return 'MQTT-4.7.1-1';
  return undefined;
}

const MALFORMED = 'MQTT-1.5.3';

function stringField(reader: BodyReader): { ok: true; value: string } | { ok: false; rule: Rule } {
  const bytes = reader.bytes();
  if (!bytes) return { ok: false, rule: MALFORMED };
  return decodeMqttString(bytes);
}

/** CONNECT (MQTT 3.1.1 §3.1). Other protocol levels are left to aedes, which answers CONNACK 1. */
function checkConnect(reader: BodyReader): Rule | undefined {
  const name = stringField(reader);
  if (!name.ok) return name.rule;
  const level = reader.byte();
  if (level === undefined) return MALFORMED;
  // 3 = MQTT 3.1 ("MQIsdp"), 4 = 3.1.1; MQTT 5 CONNECTs carry properties and are refused by aedes.
  if (level !== 3 && level !== 4) return undefined;
  if (!((name.value === 'MQTT' && level === 4) || (name.value === 'MQIsdp' && level === 3))) return 'MQTT-3.1.2-1';
  const flags = reader.byte();
  if (flags === undefined || reader.u16() === undefined) return MALFORMED;
  if (flags & 0x01) return 'MQTT-3.1.2-3';
  const will = (flags & 0x04) !== 0;
  const willQos = (flags >> 3) & 0x03;
  const willRetain = (flags & 0x20) !== 0;
  const hasUser = (flags & 0x80) !== 0;
  const hasPassword = (flags & 0x40) !== 0;
  if (!will && willQos !== 0) return 'MQTT-3.1.2-13';
  if (!will && willRetain) return 'MQTT-3.1.2-15';
  if (will && willQos === 3) return 'MQTT-3.1.2-14';
  if (!hasUser && hasPassword) return 'MQTT-3.1.2-22';
  const clientId = stringField(reader);
  if (!clientId.ok) return clientId.rule;
  if (will) {
    const topic = stringField(reader);
    if (!topic.ok) return topic.rule;
    const topicRule = checkTopicName(topic.value);
    if (topicRule) return topicRule;
    if (!reader.bytes()) return MALFORMED;
  }
  if (hasUser) {
    const user = stringField(reader);
    if (!user.ok) return user.rule;
  }
  if (hasPassword && !reader.bytes()) return MALFORMED;
  // Bytes after the last field the flags announce: the packet is not what it says it is.
  if (reader.left !== 0) return MALFORMED;
  return undefined;
}

/** SUBSCRIBE (§3.8) and UNSUBSCRIBE (§3.10): a non-zero packet id, at least one filter, each valid. */
function checkFilters(reader: BodyReader, withOptions: boolean): Rule | undefined {
  const packetId = reader.u16();
  if (packetId === undefined) return MALFORMED;
  if (packetId === 0) return 'MQTT-2.3.1-1';
  if (reader.left === 0) return withOptions ? 'MQTT-3.8.3-3' : 'MQTT-3.10.3-2';
  while (reader.left > 0) {
    const filter = stringField(reader);
    if (!filter.ok) return filter.rule;
    const rule = checkTopicFilter(filter.value);
    if (rule) return rule;
    if (withOptions) {
      const options = reader.byte();
      if (options === undefined) return MALFORMED;
      if (options & 0xfc) return 'MQTT-3.8.3-4';
      if ((options & 0x03) === 3) return 'MQTT-3.8.3-4';
    }
  }
  return undefined;
}

/**
 * Checks one whole packet body of a type for which wantsBody() is true. `body` excludes the fixed
 * header. Returns the broken rule, or undefined.
 */
export function checkPacket(type: number, body: Uint8Array): Rule | undefined {
  const reader = new BodyReader(body);
  if (type === PacketType.CONNECT) return checkConnect(reader);
  if (type === PacketType.SUBSCRIBE) return checkFilters(reader, true);
  if (type === PacketType.UNSUBSCRIBE) return checkFilters(reader, false);
  return undefined;
}
