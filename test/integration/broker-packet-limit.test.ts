import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { connect as netConnect, type Socket } from 'node:net';
import { once } from 'node:events';
import { connect as tlsConnect } from 'node:tls';
import { Registry } from 'prom-client';
import { FleetBroker } from '../../broker/fleet-broker.js';
import { configSchema } from '../../src/config/schema.js';
import { silentLogger } from '../../src/log.js';
import { connectDevice, closed, endAll, rawConnect, remainingLength, startFleetBroker, type BrokerFixture } from '../helpers/mqtt-client.js';
import { mqttPacket, mqttString } from '../helpers/mqtt-packets.js';
import { eventually } from '../helpers/processes.js';
import { tempDir } from '../helpers/temp-dir.js';
import { selfSignedCert, type SelfSignedCert } from '../helpers/tls-cert.js';
import { toolsMissing } from '../helpers/system-tools.js';

const MB = 1024 * 1024;
const topic = 'fleet/v1/gw-001/heartbeat';
/** A QoS 1 PUBLISH on `topic` is 1 type byte + 2 length bytes + 2 + 25 topic bytes + 2 id bytes + payload. */
const publishOverhead = 1 + 2 + 2 + topic.length + 2;

async function rawSession(port: number): Promise<Socket> {
  const socket = netConnect(port, '127.0.0.1');
  socket.on('error', () => {}); // EPIPE/ECONNRESET once the broker cuts us off is the expected outcome
  await once(socket, 'connect');
  socket.write(rawConnect('gw-001', 'gw-001', 'token-gw-001'));
  const [connack] = (await once(socket, 'data')) as [Buffer];
  expect([...connack]).toEqual([0x20, 0x02, 0x00, 0x00]);
  return socket;
}

/**
 * Streams up to `maxBytes` of body after a header, one chunk per 'drain', until the broker closes
 * the socket. Returns the bytes written and the time to the close.
 */
async function streamUntilClosed(socket: Socket, fixedHeader: Buffer, maxBytes: number): Promise<{ closed: boolean; written: number; ms: number }> {
  const started = performance.now();
  let isClosed = false;
  // events.once() would reject on the ECONNRESET that comes with the cut; only 'close' matters here.
  const closedP = new Promise<void>((resolve) => socket.once('close', () => resolve())).then(() => (isClosed = true));
  socket.write(fixedHeader);
  const chunk = Buffer.alloc(256 * 1024, 0x61);
  let written = 0;
  while (!isClosed && written < maxBytes) {
    const flushed = socket.write(chunk);
    written += chunk.length;
    if (!flushed) await Promise.race([new Promise((resolve) => socket.once('drain', resolve)), closedP]);
  }
  // Bounded wait, so a broker that keeps buffering fails the test instead of hanging it.
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([closedP, new Promise((resolve) => (timer = setTimeout(resolve, 1000)))]);
  clearTimeout(timer);
  socket.destroy();
  return { closed: isClosed, written, ms: performance.now() - started };
}

describe('FleetBroker maximum packet size (declared length, before buffering)', () => {
  let fx: BrokerFixture;
  let port: number;
  beforeAll(async () => {
    fx = await startFleetBroker({ 'gw-001': 'token-gw-001' }, { maxPacketBytes: 2048 });
    port = fx.broker.ports().mqtt!;
  });
  afterAll(async () => {
    await fx.stop();
  });

  it('accepts a PUBLISH of exactly mqtt.maxPacketBytes', async () => {
    const client = await connectDevice(fx.url, { id: 'gw-001', token: 'token-gw-001' });
    const payload = 'a'.repeat(2048 - publishOverhead);
    await client.publishAsync(topic, payload, { qos: 1 });
    await fx.waitMessage((m) => m.payload === payload);
    await endAll(client);
  });

  it('closes the connection on a PUBLISH one byte above mqtt.maxPacketBytes and counts it', async () => {
    const before = await fx.metric('fleet_mqtt_oversize_packets_total');
    const client = await connectDevice(fx.url, { id: 'gw-001', token: 'token-gw-001' });
    const gone = closed(client);
    client.publish(topic, 'b'.repeat(2049 - publishOverhead), { qos: 1 });
    await gone;
    expect(await fx.metric('fleet_mqtt_oversize_packets_total')).toBe(before + 1);
    expect(fx.messages.some((m) => m.payload.startsWith('bbb'))).toBe(false);
    await endAll(client);
  });

  it('cuts off a raw PUBLISH declaring 256 MB quickly, with memory bounded', async () => {
    const socket = await rawSession(port);
    const memBefore = process.memoryUsage();
    // 0x32 = PUBLISH QoS 1; the largest remaining length MQTT allows is 256 MB - 1.
    const header = Buffer.concat([Buffer.from([0x32]), remainingLength(256 * MB - 1)]);
    const { closed: cut, written, ms } = await streamUntilClosed(socket, header, 64 * MB);
    const memAfter = process.memoryUsage();
    expect(cut).toBe(true);
    expect(ms).toBeLessThan(1000);
    expect(written).toBeLessThan(64 * MB);
    expect(memAfter.arrayBuffers - memBefore.arrayBuffers).toBeLessThan(16 * MB);
    expect(memAfter.rss - memBefore.rss).toBeLessThan(64 * MB);
  });

  it('cuts off a connection whose CONNECT itself declares 256 MB, before any authentication', async () => {
    const before = await fx.metric('fleet_mqtt_oversize_packets_total');
    const socket = netConnect(port, '127.0.0.1');
    socket.on('error', () => {});
    await once(socket, 'connect');
    const header = Buffer.concat([Buffer.from([0x10]), remainingLength(256 * MB - 1)]);
    const { closed: cut, ms } = await streamUntilClosed(socket, header, 64 * MB);
    expect(cut).toBe(true);
    expect(ms).toBeLessThan(1000);
    expect(await fx.metric('fleet_mqtt_oversize_packets_total')).toBe(before + 1);
  });

  it('closes a connection whose remaining-length varint is malformed (5 bytes)', async () => {
    const socket = await rawSession(port);
    const { closed: cut, ms } = await streamUntilClosed(socket, Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]), MB);
    expect(cut).toBe(true);
    expect(ms).toBeLessThan(1000);
  });
});

describe('a connection that waited for its turn is scanned from its first byte (issue 12)', () => {
  it('an oversize CONNECT sent while waiting is refused when its turn comes, before its body is read', async () => {
    const fx = await startFleetBroker({ 'gw-001': 'token-gw-001' }, { maxUnauthenticated: 1, connectTimeoutMs: 30_000 });
    const port = fx.broker.ports().mqtt!;
    try {
      const before = await fx.metric('fleet_mqtt_oversize_packets_total');
      const holder = netConnect(port, '127.0.0.1');
      holder.on('error', () => {});
      await once(holder, 'connect');
      const waiter = netConnect(port, '127.0.0.1');
      waiter.on('error', () => {});
      await once(waiter, 'connect');
      await eventually(async () => (await fx.metric('fleet_mqtt_waiting_connections')) === 1, 5000, 'second connection waiting');
      const waiterClosed = new Promise<void>((resolve) => waiter.once('close', () => resolve()));
      // The header and more body than the socket buffers unread: it all waits in this socket's buffer and the kernel.
      waiter.write(Buffer.concat([Buffer.from([0x10]), remainingLength(256 * MB - 1)]));
      waiter.write(Buffer.alloc(MB, 0x61));
      holder.destroy(); // the turn frees: the waiting connection is handed over with bytes already buffered
      await waiterClosed;
      expect(await fx.metric('fleet_mqtt_oversize_packets_total')).toBe(before + 1);
      // A well-formed device still gets its turn and its session.
      const client = await connectDevice(fx.url, { id: 'gw-001', token: 'token-gw-001' });
      await endAll(client);
    } finally {
      await fx.stop();
    }
  });
});

// The certificates are made with the openssl CLI: without it these skip loudly (never under CI=true).
describe.skipIf(toolsMissing(['openssl'], 'openssl').length > 0)('the limit holds over TLS too (issue 12: scanned on the TLSSocket itself)', () => {
  const dir = tempDir('xcare-limit-tls-');
  let cert: SelfSignedCert;
  let fx: BrokerFixture;
  beforeAll(async () => {
    cert = await selfSignedCert(dir.path);
    fx = await startFleetBroker({ 'gw-001': 'token-gw-001' }, { tls: { cert: cert.certPath, key: cert.keyPath } });
  });
  afterAll(async () => {
    await fx.stop();
    dir.cleanup();
  });

  it('cuts off a TLS connection whose CONNECT declares 256 MB before buffering it, counted', async () => {
    const before = await fx.metric('fleet_mqtt_oversize_packets_total');
    const socket = tlsConnect({ host: '127.0.0.1', port: fx.broker.ports().mqtts!, ca: cert.cert, servername: 'localhost' });
    socket.on('error', () => {});
    await once(socket, 'secureConnect');
    const memBefore = process.memoryUsage();
    const header = Buffer.concat([Buffer.from([0x10]), remainingLength(256 * MB - 1)]);
    const { closed: cut, written, ms } = await streamUntilClosed(socket, header, 64 * MB);
    const memAfter = process.memoryUsage();
    expect(cut).toBe(true);
    expect(ms).toBeLessThan(5000);
    expect(written).toBeLessThan(64 * MB);
    expect(memAfter.arrayBuffers - memBefore.arrayBuffers).toBeLessThan(16 * MB);
    expect(await fx.metric('fleet_mqtt_oversize_packets_total')).toBe(before + 1);
  });

  it('a device over TLS still publishes next to that', async () => {
    const client = await connectDevice(`mqtts://127.0.0.1:${fx.broker.ports().mqtts}`, { id: 'gw-001', token: 'token-gw-001', ca: cert.cert });
    await client.publishAsync(topic, '{"after":"tls-oversize"}', { qos: 1 });
    await fx.waitMessage((m) => m.payload === '{"after":"tls-oversize"}');
    await endAll(client);
  });
});

describe('backpressure: a slow aedes side pauses the socket, never buffers without bound (issue 12)', () => {
  it('while a CONNECT is being authenticated, 24 MB sent after it stays in the peer, then all arrives', async () => {
    const config = configSchema.parse({ mqtt: { host: '127.0.0.1', port: 0 } });
    let release: (ok: boolean) => void = () => {};
    const held = new Promise<boolean>((resolve) => (release = resolve));
    const broker = new FleetBroker({ config: config.mqtt, log: silentLogger(), metrics: new Registry(), authenticate: () => held });
    let delivered = 0;
    let deliveredBytes = 0;
    broker.onDeviceMessage((_id, _kind, payload) => {
      delivered++;
      deliveredBytes += payload.length;
    });
    await broker.start();
    const socket = netConnect(broker.ports().mqtt!, '127.0.0.1');
    try {
      socket.on('error', () => {});
      socket.on('data', () => {}); // CONNACK and nothing else (QoS 0)
      await once(socket, 'connect');
      // Valid QoS 0 heartbeats of 60 KB (under the 64 KiB default), one buffer written again and again:
      // the peer's queue costs this process nothing, a broker that kept reading would.
      const payload = Buffer.alloc(60_000, 0x61);
      const publish = mqttPacket(0x30, Buffer.concat([mqttString(topic), payload]));
      const burst = Buffer.concat(Array.from({ length: 16 }, () => publish));
      const rounds = Math.ceil((24 * MB) / burst.length);
      const memBefore = process.memoryUsage().arrayBuffers;
      socket.write(rawConnect('gw-001', 'gw-001', 'token-gw-001'));
      for (let i = 0; i < rounds; i++) socket.write(burst);
      // Pushed back: the peer's queue stops shrinking, with most of the 24 MB still in it.
      let last = -1;
      let stable = 0;
      await eventually(
        async () => {
          stable = socket.writableLength === last ? stable + 1 : 0;
          last = socket.writableLength;
          return stable >= 10;
        },
        20_000,
        'the peer to be pushed back',
      );
      expect(socket.writableLength).toBeGreaterThan(8 * MB);
      expect(process.memoryUsage().arrayBuffers - memBefore).toBeLessThan(8 * MB);
      expect(delivered).toBe(0);
      // The CONNECT is accepted: aedes reads again, the socket resumes, every heartbeat arrives whole.
      release(true);
      await eventually(async () => delivered === rounds * 16, 60_000, 'every heartbeat delivered');
      expect(deliveredBytes).toBe(rounds * 16 * payload.length);
      expect(broker.isConnected('gw-001')).toBe(true);
    } finally {
      socket.destroy();
      await broker.stop();
    }
  }, 90_000);
});
