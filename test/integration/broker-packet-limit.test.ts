import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { connect as netConnect, type Socket } from 'node:net';
import { once } from 'node:events';
import { connectDevice, closed, endAll, rawConnect, remainingLength, startFleetBroker, type BrokerFixture } from '../helpers/mqtt-client.js';

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
