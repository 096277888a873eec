import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { once } from 'node:events';
import { tempDir } from '../helpers/temp-dir.js';
import { selfSignedCert, type SelfSignedCert } from '../helpers/tls-cert.js';
import { connectDevice, endAll, startFleetBroker, type BrokerFixture } from '../helpers/mqtt-client.js';
import { connectPacket, mqttPacket, mqttString } from '../helpers/mqtt-packets.js';
import { eventually } from '../helpers/processes.js';
import { labelled } from '../helpers/metrics.js';

/** Issue 11 faults 1 and 5: idle and hostile peers on every MQTT listener, against a real broker on loopback. */

const device = { id: 'gw-001', token: 'token-gw-001' };

function openRaw(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: '127.0.0.1', port }, () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Resolves once the server has closed `socket` (end or reset). */
function closedByServer(socket: Socket): Promise<void> {
  if (socket.destroyed || socket.readableEnded) return Promise.resolve();
  socket.on('error', () => {});
  socket.resume();
  return once(socket, 'close').then(() => undefined);
}

/** Sends raw bytes after CONNECT and collects what the broker answers until it closes. */
async function exchange(port: number, packets: Buffer[]): Promise<{ received: Buffer; closed: boolean }> {
  const socket = await openRaw(port);
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.on('error', () => {});
  const closed = once(socket, 'close').then(() => true);
  const [first, ...rest] = packets;
  socket.write(first!);
  if (rest.length > 0) {
    // The rest goes after the CONNACK, as a real client's would (auth is asynchronous).
    await Promise.race([closed, new Promise<void>((resolve) => socket.once('data', () => resolve()))]);
    for (const p of rest) socket.write(p);
  }
  const outcome = await Promise.race([closed, new Promise<boolean>((r) => setTimeout(() => r(false), 3000))]);
  socket.destroy();
  return { received: Buffer.concat(chunks), closed: outcome };
}

/** CONNECT with explicit flags and a Will; the 0xde of issue 11 is username+password+will QoS 3+will+clean. */
function connectWithFlags(flags: number, clientId: string, will?: { topic: string; payload: string }, username?: string, password?: string): Buffer {
  const variable = Buffer.concat([mqttString('MQTT'), Buffer.from([4, flags, 0, 60])]);
  const parts = [mqttString(clientId)];
  if (will) parts.push(mqttString(will.topic), mqttString(will.payload));
  if (username !== undefined) parts.push(mqttString(username));
  if (password !== undefined) parts.push(mqttString(password));
  return mqttPacket(0x10, Buffer.concat([variable, ...parts]));
}

/** SUBSCRIBE with a raw filter (bytes as given, so ill-formed UTF-8 and U+0000 reach the wire). */
function rawSubscribe(packetId: number, filter: Buffer, options = 1): Buffer {
  const len = Buffer.from([filter.length >> 8, filter.length & 0xff]);
  return mqttPacket(0x82, Buffer.concat([Buffer.from([packetId >> 8, packetId & 0xff]), len, filter, Buffer.from([options])]));
}

describe('every MQTT listener drops peers that do not authenticate in time (issue 11 fault 1)', () => {
  const dir = tempDir('xcare-hostile-tls-');
  let cert: SelfSignedCert;
  let fx: BrokerFixture;
  beforeAll(async () => {
    cert = await selfSignedCert(dir.path);
    fx = await startFleetBroker(
      { [device.id]: device.token },
      { plainWithTls: true, connectTimeoutMs: 700, maxUnauthenticatedPerAddress: 40, tls: { cert: cert.certPath, key: cert.keyPath } },
    );
  });
  afterAll(async () => {
    await fx.stop();
    dir.cleanup();
  });

  it('closes idle TCP sockets on the TLS port at mqtt.connectTimeoutMs and counts them', async () => {
    const before = await labelled(fx.metrics, 'fleet_mqtt_connections_dropped_total', { reason: 'connect_timeout' });
    const sockets = await Promise.all(Array.from({ length: 20 }, () => openRaw(fx.broker.ports().mqtts!)));
    const started = Date.now();
    await Promise.all(sockets.map(closedByServer));
    // Closed by the guard, far before Node's 120 s TLS handshake timeout.
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(await labelled(fx.metrics, 'fleet_mqtt_connections_dropped_total', { reason: 'connect_timeout' })).toBe(before + 20);
  });

  it('closes a peer that completed TLS but never sends CONNECT', async () => {
    const socket = tlsConnect({ host: '127.0.0.1', port: fx.broker.ports().mqtts!, ca: cert.cert, servername: 'localhost' });
    await once(socket, 'secureConnect');
    await closedByServer(socket as unknown as Socket);
  });

  it('closes a peer that speaks plain MQTT to the TLS port at once, counted as tls_error', async () => {
    const before = await labelled(fx.metrics, 'fleet_mqtt_connections_dropped_total', { reason: 'tls_error' });
    const socket = await openRaw(fx.broker.ports().mqtts!);
    socket.write(connectPacket(device.id, device.id, device.token));
    const started = Date.now();
    await closedByServer(socket);
    expect(Date.now() - started).toBeLessThan(5000);
    await eventually(async () => (await labelled(fx.metrics, 'fleet_mqtt_connections_dropped_total', { reason: 'tls_error' })) === before + 1, 5000, 'tls_error counted');
  });

  it('one sweeping timer cuts each idle socket at its own deadline: one accepted later outlives the earlier ones (issue 12)', async () => {
    // The TLS port: aedes never sees these sockets, so only the guard's sweep can cut them.
    const timeoutMs = 700;
    const port = fx.broker.ports().mqtts!;
    const before = await labelled(fx.metrics, 'fleet_mqtt_connections_dropped_total', { reason: 'connect_timeout' });
    const first = await Promise.all(Array.from({ length: 5 }, () => openRaw(port)));
    const firstClosed = Promise.all(first.map(closedByServer));
    await new Promise((r) => setTimeout(r, timeoutMs / 2));
    const laterOpened = performance.now();
    const later = await openRaw(port);
    let laterClosedAt: number | undefined;
    void closedByServer(later).then(() => (laterClosedAt = performance.now()));
    await firstClosed;
    await eventually(() => laterClosedAt !== undefined, 20_000, 'the later socket to be cut');
    // A lower bound only: a slow machine can make the cut later, never earlier.
    expect(laterClosedAt! - laterOpened).toBeGreaterThanOrEqual(timeoutMs - 20);
    expect(await labelled(fx.metrics, 'fleet_mqtt_connections_dropped_total', { reason: 'connect_timeout' })).toBe(before + 6);
    await eventually(async () => (await fx.metric('fleet_mqtt_unauthenticated_connections')) === 0, 5000, 'no unauthenticated socket left');
  });

  it('closes idle sockets on the plain port too', async () => {
    const socket = await openRaw(fx.broker.ports().mqtt!);
    await closedByServer(socket);
  });

  it('an authenticated device is not cut by the connect timeout', async () => {
    const client = await connectDevice(`mqtts://127.0.0.1:${fx.broker.ports().mqtts}`, { ...device, ca: cert.cert });
    await new Promise((r) => setTimeout(r, 1500));
    expect(client.connected).toBe(true);
    expect(fx.broker.isConnected(device.id)).toBe(true);
    await endAll(client);
  });
});

function openRawFrom(port: number, localAddress: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: '127.0.0.1', port, localAddress }, () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Is `socket` still open after the broker had `ms` to act on it? */
async function stillOpen(socket: Socket, ms = 300): Promise<boolean> {
  socket.on('error', () => {});
  await new Promise((r) => setTimeout(r, ms));
  return !socket.destroyed && !socket.readableEnded;
}

describe('caps on unauthenticated connections (issue 11 fault 1, issue 12: a herd waits, it is not refused)', () => {
  it('beyond mqtt.maxUnauthenticatedPerAddress a connection waits unread, and gets its turn when one leaves', async () => {
    const other = { id: 'gw-002', token: 'token-gw-002' };
    const fx = await startFleetBroker({ [device.id]: device.token, [other.id]: other.token }, { maxUnauthenticatedPerAddress: 3, maxUnauthenticated: 100, connectTimeoutMs: 30_000 });
    const port = Number(new URL(fx.url).port);
    try {
      const authenticated = await connectDevice(fx.url, device);
      const idle = await Promise.all([openRaw(port), openRaw(port), openRaw(port)]);
      // The fourth from this address waits: open, counted as waiting, its CONNECT not read yet.
      const fourth = await openRaw(port);
      await eventually(async () => (await fx.metric('fleet_mqtt_waiting_connections')) === 1, 5000, 'fourth waiting');
      expect(await stillOpen(fourth)).toBe(true);
      const connack = new Promise<Buffer>((resolve) => fourth.once('data', resolve));
      fourth.write(connectPacket(other.id, other.id, other.token));
      await new Promise((r) => setTimeout(r, 300));
      expect(fx.broker.isConnected(other.id)).toBe(false); // the waiting CONNECT was not read
      // A turn frees when an idle peer leaves: the waiting CONNECT is read and answered.
      idle[0]!.destroy();
      const answer = await connack;
      expect([...answer.subarray(0, 4)]).toEqual([0x20, 2, 0, 0]);
      expect(fx.broker.isConnected(other.id)).toBe(true);
      expect(await fx.metric('fleet_mqtt_waiting_connections')).toBe(0);
      expect(await labelled(fx.metrics, 'fleet_mqtt_connections_dropped_total', { reason: 'address_cap' })).toBe(0);
      for (const s of [...idle, fourth]) s.destroy();
      await endAll(authenticated);
    } finally {
      await fx.stop();
    }
  });

  it('a herd from one address far beyond the caps all gets in, none refused (NAT after a restart)', async () => {
    const logins = Array.from({ length: 60 }, (_, i) => ({ id: `gw-${String(i).padStart(3, '0')}`, token: `token-${i}` }));
    const fx = await startFleetBroker(Object.fromEntries(logins.map((l) => [l.id, l.token])), {
      maxUnauthenticatedPerAddress: 2,
      maxUnauthenticated: 4,
      connectTimeoutMs: 60_000,
    }, { authDelayMs: 20 });
    try {
      const clients = await Promise.all(logins.map((l) => connectDevice(fx.url, l, { reconnectPeriod: 0, connectTimeout: 60_000 })));
      expect(clients.every((c) => c.connected)).toBe(true);
      for (const reason of ['address_cap', 'unauthenticated_cap']) {
        expect(await labelled(fx.metrics, 'fleet_mqtt_connections_dropped_total', { reason })).toBe(0);
      }
      await endAll(...clients);
    } finally {
      await fx.stop();
    }
  });

  it('mqtt.maxWaiting full: the address waiting most loses its oldest to another address; its own newcomer is closed', async () => {
    const fx = await startFleetBroker({}, { maxUnauthenticated: 1, maxUnauthenticatedPerAddress: 1, maxWaiting: 3, connectTimeoutMs: 30_000 });
    const port = Number(new URL(fx.url).port);
    try {
      const reading = await openRaw(port);
      const waitingA = [await openRaw(port), await openRaw(port), await openRaw(port)];
      await eventually(async () => (await fx.metric('fleet_mqtt_waiting_connections')) === 3, 5000, 'three waiting');
      // Another from the flooding address: closed, the queue is full of its own.
      const moreA = await openRaw(port);
      await closedByServer(moreA);
      expect(await labelled(fx.metrics, 'fleet_mqtt_connections_dropped_total', { reason: 'unauthenticated_cap' })).toBe(1);
      // One from another address: the flooding address loses its oldest waiting connection instead.
      const fromB = await openRawFrom(port, '127.0.0.2');
      await closedByServer(waitingA[0]!);
      expect(await labelled(fx.metrics, 'fleet_mqtt_connections_dropped_total', { reason: 'address_cap' })).toBe(1);
      expect(await stillOpen(fromB)).toBe(true);
      expect(await stillOpen(waitingA[1]!)).toBe(true);
      for (const s of [reading, ...waitingA, fromB]) s.destroy();
    } finally {
      await fx.stop();
    }
  });

  it('a waiting connection still has only mqtt.connectTimeoutMs from accept', async () => {
    const fx = await startFleetBroker({}, { maxUnauthenticated: 1, connectTimeoutMs: 800 });
    const port = Number(new URL(fx.url).port);
    try {
      const first = await openRaw(port);
      const second = await openRaw(port);
      await Promise.all([closedByServer(first), closedByServer(second)]);
      expect(await labelled(fx.metrics, 'fleet_mqtt_connections_dropped_total', { reason: 'connect_timeout' })).toBe(2);
      expect(await fx.metric('fleet_mqtt_waiting_connections')).toBe(0);
      expect(await fx.metric('fleet_mqtt_unauthenticated_connections')).toBe(0);
    } finally {
      await fx.stop();
    }
  });
});

describe('malformed CONNECT and SUBSCRIBE are closed and counted (issue 11 fault 5)', () => {
  let fx: BrokerFixture;
  let port: number;
  beforeAll(async () => {
    fx = await startFleetBroker({ [device.id]: device.token });
    port = Number(new URL(fx.url).port);
  });
  afterAll(() => fx.stop());

  async function expectClosedFor(rule: string, packets: Buffer[]): Promise<Buffer> {
    const before = await labelled(fx.metrics, 'fleet_mqtt_protocol_violations_total', { rule });
    const { received, closed } = await exchange(port, packets);
    expect(closed).toBe(true);
    expect(await labelled(fx.metrics, 'fleet_mqtt_protocol_violations_total', { rule })).toBe(before + 1);
    return received;
  }

  it('the CONNECT with flags 0xde (Will QoS 3) gets no CONNACK: closed [MQTT-3.1.2-14]', async () => {
    const packet = connectWithFlags(0xde, device.id, { topic: `fleet/v1/${device.id}/state`, payload: '{"online":false}' }, device.id, device.token);
    const received = await expectClosedFor('MQTT-3.1.2-14', [packet]);
    expect(received.length).toBe(0);
    expect(fx.broker.isConnected(device.id)).toBe(false);
  });

  it('a SUBSCRIBE whose filter holds U+0000 is closed, not granted [MQTT-1.5.3-2]', async () => {
    const received = await expectClosedFor('MQTT-1.5.3-2', [
      connectPacket(device.id, device.id, device.token),
      rawSubscribe(1, Buffer.from(`fleet/v1/${device.id}/cmd/\u0000x`, 'utf8')),
    ]);
    // The CONNACK came (0x20 0x02 0x00 0x00), no SUBACK (0x90).
    expect([...received.subarray(0, 4)]).toEqual([0x20, 0x02, 0x00, 0x00]);
    expect(received.includes(0x90)).toBe(false);
  });

  const cases: Array<[string, string, () => Buffer[]]> = [
    ['Will QoS set without a Will [MQTT-3.1.2-13]', 'MQTT-3.1.2-13', () => [connectWithFlags(0xc2 | 0x08, device.id, undefined, device.id, device.token)]],
    ['Will Retain set without a Will [MQTT-3.1.2-15]', 'MQTT-3.1.2-15', () => [connectWithFlags(0xc2 | 0x20, device.id, undefined, device.id, device.token)]],
    ['a password without a user name [MQTT-3.1.2-22]', 'MQTT-3.1.2-22', () => [connectWithFlags(0x42, device.id, undefined, undefined, device.token)]],
    ['a client id of ill-formed UTF-8 [MQTT-1.5.3-1]', 'MQTT-1.5.3-1', () => [mqttPacket(0x10, Buffer.concat([mqttString('MQTT'), Buffer.from([4, 0x02, 0, 60, 0, 2, 0xc3, 0x28])]))]],
    ['a client id holding an encoded surrogate [MQTT-1.5.3-1]', 'MQTT-1.5.3-1', () => [mqttPacket(0x10, Buffer.concat([mqttString('MQTT'), Buffer.from([4, 0x02, 0, 60, 0, 3, 0xed, 0xa0, 0x80])]))]],
    ['a Will topic with a wildcard [MQTT-4.7.1-1]', 'MQTT-4.7.1-1', () => [connectWithFlags(0xc6, device.id, { topic: 'fleet/v1/#', payload: 'x' }, device.id, device.token)]],
    ['bytes after the last CONNECT field', 'MQTT-1.5.3', () => [mqttPacket(0x10, Buffer.concat([mqttString('MQTT'), Buffer.from([4, 0x02, 0, 60]), mqttString('x'), Buffer.from([1, 2, 3])]))]],
    ['a first packet that is not CONNECT [MQTT-3.1.0-1]', 'MQTT-3.1.0-1', () => [Buffer.from([0xc0, 0x00])]],
    ['a second CONNECT [MQTT-3.1.0-2]', 'MQTT-3.1.0-2', () => [connectPacket(device.id, device.id, device.token), connectPacket(device.id, device.id, device.token)]],
    ['a CONNACK sent by a client [MQTT-2.2.1]', 'MQTT-2.2.1', () => [connectPacket(device.id, device.id, device.token), Buffer.from([0x20, 0x02, 0x00, 0x00])]],
    ['a PUBLISH with both QoS bits set [MQTT-3.3.1-4]', 'MQTT-3.3.1-4', () => [connectPacket(device.id, device.id, device.token), mqttPacket(0x36, Buffer.concat([mqttString(`fleet/v1/${device.id}/heartbeat`), Buffer.from([0, 1]), Buffer.from('{}')]))]],
    ['a PINGREQ with reserved flags set [MQTT-2.2.2-2]', 'MQTT-2.2.2-1', () => [connectPacket(device.id, device.id, device.token), Buffer.from([0xc1, 0x00])]],
    ['a SUBSCRIBE with packet id 0 [MQTT-2.3.1-1]', 'MQTT-2.3.1-1', () => [connectPacket(device.id, device.id, device.token), rawSubscribe(0, Buffer.from(`fleet/v1/${device.id}/cmd/#`))]],
    ['a SUBSCRIBE with no filter [MQTT-3.8.3-3]', 'MQTT-3.8.3-3', () => [connectPacket(device.id, device.id, device.token), mqttPacket(0x82, Buffer.from([0, 1]))]],
    ['a SUBSCRIBE to an empty filter [MQTT-4.7.3-1]', 'MQTT-4.7.3-1', () => [connectPacket(device.id, device.id, device.token), rawSubscribe(1, Buffer.alloc(0))]],
    ['a SUBSCRIBE with # not last [MQTT-4.7.1-2]', 'MQTT-4.7.1-2', () => [connectPacket(device.id, device.id, device.token), rawSubscribe(1, Buffer.from('fleet/#/cmd'))]],
    ['a SUBSCRIBE with + inside a level [MQTT-4.7.1-3]', 'MQTT-4.7.1-3', () => [connectPacket(device.id, device.id, device.token), rawSubscribe(1, Buffer.from('fleet/v1/gw+/cmd'))]],
    ['an UNSUBSCRIBE with no filter [MQTT-3.10.3-2]', 'MQTT-3.10.3-2', () => [connectPacket(device.id, device.id, device.token), mqttPacket(0xa2, Buffer.from([0, 1]))]],
  ];
  for (const [name, rule, packets] of cases) {
    it(`closes ${name}`, async () => {
      await expectClosedFor(rule, packets());
    });
  }

  it('a well-formed device session still works next to all of that', async () => {
    const client = await connectDevice(fx.url, device);
    await client.subscribeAsync(`fleet/v1/${device.id}/cmd/#`, { qos: 1 });
    await client.publishAsync(`fleet/v1/${device.id}/heartbeat`, '{"ok":1}', { qos: 1 });
    await fx.waitMessage((m) => m.payload === '{"ok":1}');
    await endAll(client);
  });
});
