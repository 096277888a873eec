/**
 * Raw MQTT 3.1.1 bytes, for tests and benchmarks that must control exactly what goes on the wire
 * (no client library): the packet-size limit, thousands of cheap load-generator connections.
 */

/** Remaining-length varint [MQTT 3.1.1 §2.2.3]. */
export function remainingLength(length: number): Buffer {
  const out: number[] = [];
  do {
    let byte = length % 128;
    length = Math.floor(length / 128);
    if (length > 0) byte |= 0x80;
    out.push(byte);
  } while (length > 0);
  return Buffer.from(out);
}

/** A length-prefixed UTF-8 string [MQTT 3.1.1 §1.5.3]. */
export function mqttString(s: string): Buffer {
  const bytes = Buffer.from(s, 'utf8');
  const len = Buffer.alloc(2);
  len.writeUInt16BE(bytes.length);
  return Buffer.concat([len, bytes]);
}

/** A whole packet: fixed header byte, remaining length, body. */
export function mqttPacket(firstByte: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([firstByte]), remainingLength(body.length), body]);
}

/** CONNECT, clean session; with username and password unless `password` is undefined. */
export function connectPacket(clientId: string, username?: string, password?: string, keepaliveS = 60): Buffer {
  const flags = 0b00000010 | (username !== undefined ? 0x80 : 0) | (password !== undefined ? 0x40 : 0);
  const variable = Buffer.concat([mqttString('MQTT'), Buffer.from([4, flags, keepaliveS >> 8, keepaliveS & 0xff])]);
  const parts = [mqttString(clientId)];
  if (username !== undefined) parts.push(mqttString(username));
  if (password !== undefined) parts.push(mqttString(password));
  return mqttPacket(0x10, Buffer.concat([variable, ...parts]));
}

/** PUBLISH at QoS 1 with a packet id. */
export function publishQos1(topic: string, packetId: number, payload: Buffer): Buffer {
  return mqttPacket(0x32, Buffer.concat([mqttString(topic), Buffer.from([packetId >> 8, packetId & 0xff]), payload]));
}

/** SUBSCRIBE to one filter at `qos`. */
export function subscribePacket(packetId: number, filter: string, qos = 1): Buffer {
  return mqttPacket(0x82, Buffer.concat([Buffer.from([packetId >> 8, packetId & 0xff]), mqttString(filter), Buffer.from([qos])]));
}
