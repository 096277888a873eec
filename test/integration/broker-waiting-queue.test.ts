import { describe, it, expect, afterEach } from 'vitest';
import { connect as netConnect, type Socket } from 'node:net';
import { once } from 'node:events';
import { tempDir } from '../helpers/temp-dir.js';
import { selfSignedCert } from '../helpers/tls-cert.js';
import { connectDevice, endAll, rawConnect, startFleetBroker, type BrokerFixture } from '../helpers/mqtt-client.js';
import { labelled } from '../helpers/metrics.js';

/**
 * Issue 12, probed from outside: the waiting queue (mqtt.maxWaiting) against floods from one address while
 * devices from another address connect, on a real broker over loopback (127.0.0.2 is a second source).
 */

const device = { id: 'gw-001', token: 'token-gw-001' };

function openRawFrom(port: number, localAddress: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: '127.0.0.1', port, localAddress }, () => resolve(socket));
    socket.once('error', reject);
  });
}

/**
 * A device's CONNECT on a raw socket from `localAddress` (mqtt.js over TCP ignores localAddress); resolves with
 * the broker's first answer (the CONNACK).
 */
async function rawConnectFrom(port: number, localAddress: string, login: { id: string; token: string }): Promise<Buffer> {
  const socket = await openRawFrom(port, localAddress);
  cleanups.push(() => {
    socket.destroy();
  });
  const answer = once(socket, 'data').then(([chunk]) => chunk as Buffer);
  socket.write(rawConnect(login.id, login.id, login.token));
  return answer;
}

/** Is `socket` still open after the broker had `ms` to act on it? */
async function stillOpen(socket: Socket, ms = 300): Promise<boolean> {
  socket.on('error', () => {});
  await new Promise((r) => setTimeout(r, ms));
  return !socket.destroyed && !socket.readableEnded;
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('the waiting queue under a flood from one address (issue 12)', () => {
  it('TLS: sockets of one address that never start their handshake do not shut out a device from another address', async () => {
    const dir = tempDir('xcare-waitq-tls-');
    cleanups.push(() => dir.cleanup());
    const cert = await selfSignedCert(dir.path);
    const fx: BrokerFixture = await startFleetBroker(
      { [device.id]: device.token },
      { maxUnauthenticated: 10, maxUnauthenticatedPerAddress: 5, maxWaiting: 6, connectTimeoutMs: 30_000, tls: { cert: cert.certPath, key: cert.keyPath } },
    );
    cleanups.push(() => fx.stop());
    const port = fx.broker.ports().mqtts!;
    // The flooder fills the whole queue with sockets stuck before their TLS handshake.
    const flood = await Promise.all(Array.from({ length: 6 }, () => openRawFrom(port, '127.0.0.1')));
    cleanups.push(() => flood.forEach((s) => s.destroy()));
    for (const s of flood) s.on('error', () => {});
    await new Promise((r) => setTimeout(r, 200));
    // A device from another address: the flooding address must make room, as it does for plain TCP.
    const client = await connectDevice(`mqtts://127.0.0.1:${port}`, { ...device, ca: cert.cert }, { localAddress: '127.0.0.2', reconnectPeriod: 0, connectTimeout: 10_000 } as never);
    expect(client.connected).toBe(true);
    expect(await labelled(fx.metrics, 'fleet_mqtt_connections_dropped_total', { reason: 'address_cap' })).toBe(1);
    await endAll(client);
  });

  it('plain TCP: waiting connections are not read, so bytes a flooder sends while waiting stay in the kernel, not in the daemon', async () => {
    const fx = await startFleetBroker({ [device.id]: device.token }, { maxUnauthenticated: 1, maxUnauthenticatedPerAddress: 1, maxWaiting: 1000, connectTimeoutMs: 30_000 });
    cleanups.push(() => fx.stop());
    const port = Number(new URL(fx.url).port);
    const reading = await openRawFrom(port, '127.0.0.1');
    cleanups.push(() => {
      reading.destroy();
    });
    // One buffer for every write: what this process holds for the senders stays 64 KiB.
    const payload = Buffer.alloc(64 * 1024, 0x41);
    const before = process.memoryUsage().arrayBuffers;
    const flood: Socket[] = [];
    cleanups.push(() => flood.forEach((s) => s.destroy()));
    for (let i = 0; i < 400; i++) {
      const s = await openRawFrom(port, '127.0.0.1');
      s.on('error', () => {});
      s.write(payload);
      flood.push(s);
    }
    await new Promise((r) => setTimeout(r, 500));
    expect(await fx.metric('fleet_mqtt_waiting_connections')).toBe(400);
    // Read while waiting, 400 x 64 KiB = 25 MiB would sit in the sockets' buffers.
    const grown = process.memoryUsage().arrayBuffers - before;
    expect(grown).toBeLessThan(8 * 1024 * 1024);
    // A device from another address still gets its turn once the reading socket leaves, ahead of the flood.
    reading.destroy();
    const answer = await rawConnectFrom(port, '127.0.0.2', device);
    expect([...answer.subarray(0, 4)]).toEqual([0x20, 2, 0, 0]);
  });

  it('idle sockets from several addresses holding every turn do not lock out a herd from another address', async () => {
    const herd = Array.from({ length: 3 }, (_, i) => ({ id: `gw-h${i}`, token: `token-h${i}` }));
    const fx = await startFleetBroker(Object.fromEntries(herd.map((d) => [d.id, d.token])), {
      maxUnauthenticated: 20,
      maxUnauthenticatedPerAddress: 5,
      maxWaiting: 1000,
      connectTimeoutMs: 60_000,
    });
    cleanups.push(() => fx.stop());
    const port = Number(new URL(fx.url).port);
    // Four addresses, five idle sockets each (all 20 turns) and two waiting each.
    const idle: Socket[] = [];
    cleanups.push(() => idle.forEach((s) => s.destroy()));
    for (const from of ['127.0.0.11', '127.0.0.12', '127.0.0.13', '127.0.0.14']) {
      for (let i = 0; i < 7; i++) {
        const s = await openRawFrom(port, from);
        s.on('error', () => {});
        idle.push(s);
      }
    }
    await new Promise((r) => setTimeout(r, 200));
    expect(await fx.metric('fleet_mqtt_waiting_connections')).toBe(8);
    // The held turns age past the point where no device's CONNECT is still being read.
    await new Promise((r) => setTimeout(r, 2500));
    const started = Date.now();
    const answers = await Promise.race([
      Promise.all(herd.map((d) => rawConnectFrom(port, '127.0.0.99', d))),
      new Promise<undefined>((r) => setTimeout(() => r(undefined), 15_000)),
    ]);
    expect(answers, 'CONNACKs within 15 s (the flood holds its turns for 60 s)').toBeDefined();
    for (const answer of answers!) expect([...answer.subarray(0, 4)]).toEqual([0x20, 2, 0, 0]);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(await labelled(fx.metrics, 'fleet_mqtt_connections_dropped_total', { reason: 'address_cap' })).toBe(3);
  });
});
