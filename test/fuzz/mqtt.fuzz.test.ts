import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fc from 'fast-check';
import { join } from 'node:path';
import { connect as netConnect, type Socket } from 'node:net';
import { once } from 'node:events';
import type { MqttClient } from 'mqtt';
import { App } from '../../src/app.js';
import { validateConfig } from '../../src/config/load.js';
import { systemClock } from '../../src/clock.js';
import { silentLogger } from '../../src/log.js';
import { parseDeviceInput } from '../../src/registry/device-input.js';
import { tempDir } from '../helpers/temp-dir.js';
import { connectDevice, endAll } from '../helpers/mqtt-client.js';
import { connectPacket, mqttPacket } from '../helpers/mqtt-packets.js';
import { eventually } from '../helpers/processes.js';
import { labelled, totalOf as totalIn } from '../helpers/metrics.js';
import { dbDigest, tableDigests } from './db-digest.js';
import { fuzz, FUZZ_TEST_TIMEOUT_MS } from './fuzz-runner.js';

/**
 * Issue 11 fuzzing, MQTT side: generated packets against the real daemon (aedes broker, ingest,
 * SQLite) on loopback. Each property states what must hold for every input: the process is up (a
 * canary device keeps its session and its heartbeats are stored), nothing stored changed (DB digest),
 * the right counter moved, and the connection is answered or closed as MQTT 3.1.1 requires.
 */

const CONNECT_TIMEOUT_MS = 400;

describe('MQTT fuzzing against the real daemon', { timeout: FUZZ_TEST_TIMEOUT_MS }, () => {
  const dir = tempDir('xcare-fuzz-mqtt-');
  let app: App;
  let port: number;
  let canary: MqttClient;
  const tokens: Record<string, string> = {};

  const counter = (name: string, labels: Record<string, string> = {}) => labelled(app.metrics, name, labels);
  const totalOf = (name: string) => totalIn(app.metrics, name);

  beforeAll(async () => {
    const config = validateConfig({
      dataDir: join(dir.path, 'data'),
      adminToken: 'fuzz-admin-token-0123456789',
      mqtt: { host: '127.0.0.1', port: 0, connectTimeoutMs: CONNECT_TIMEOUT_MS, maxUnauthenticatedPerAddress: 1000 },
      http: { host: '127.0.0.1', port: 0 },
      // Thousands of refused CONNECTs are the point here, not a security incident to ticket.
      // nor are fz-sub's hundreds of connects a flapping device: no ticket may open mid-property.
      health: { security: { authFailures: 1_000_000_000, aclViolations: 1_000_000_000 }, flapping: { changes: 1_000_000_000 } },
    });
    app = new App(config, { clock: systemClock, log: silentLogger() });
    await app.start();
    port = app.broker.ports().mqtt!;
    const created = await app.registry.add(['fz-canary', 'fz-sub', 'fz-pub'].map((id) => parseDeviceInput({ id, type: 'gateway', customer: 'fuzz', installer: 'minnovation' })));
    for (const c of created) tokens[c.device.id] = c.token;
    canary = await connectDevice(`mqtt://127.0.0.1:${port}`, { id: 'fz-canary', token: tokens['fz-canary']! });
  });
  afterAll(async () => {
    await endAll(canary);
    await app.stop();
    dir.cleanup();
  });

  /** The daemon still serves: the canary's session is up and a heartbeat of it is counted. */
  async function daemonAlive(): Promise<void> {
    expect(canary.connected).toBe(true);
    const before = await counter('fleet_heartbeats_total');
    await canary.publishAsync('fleet/v1/fz-canary/heartbeat', JSON.stringify({ seq: 1, ts: '2026-11-26T17:00:00Z', intervalS: 60, agentVersion: '1.0.0', softwareVersion: '1.0.0' }), { qos: 1 });
    await eventually(async () => (await counter('fleet_heartbeats_total')) > before, 5000, 'canary heartbeat counted');
  }

  /** Opens a socket, writes `first`, then (after the first answer, as a client would) `rest`; collects until closed or quiet. */
  async function converse(first: Buffer, rest: Buffer[] = [], enough: (received: number) => boolean = () => false): Promise<{ received: Buffer; closed: boolean }> {
    const socket: Socket = netConnect({ host: '127.0.0.1', port });
    socket.on('error', () => {});
    await once(socket, 'connect');
    const chunks: Buffer[] = [];
    let closed = false;
    const closing = once(socket, 'close').then(() => {
      closed = true;
    });
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.write(first);
    if (rest.length > 0) {
      await Promise.race([closing, once(socket, 'data')]);
      if (!closed) for (const p of rest) socket.write(p);
    }
    // Wait for the close, or for as much answer as the caller expects.
    const deadline = Date.now() + CONNECT_TIMEOUT_MS * 5 + 2000;
    while (!closed && Date.now() < deadline && !enough(chunks.reduce((n, c) => n + c.length, 0))) {
      await Promise.race([closing, once(socket, 'data'), new Promise((r) => setTimeout(r, 100))]);
    }
    socket.destroy();
    return { received: Buffer.concat(chunks), closed };
  }

  it('framing: any bytes from a peer that never completes CONNECT are closed within the connect timeout; nothing stored changes', async () => {
    const before = dbDigest(app.db, ['fz-canary']);
    await fuzz(
      'mqtt.framing',
      [fc.uint8Array({ minLength: 1, maxLength: 300 })],
      async (bytes) => {
        const started = Date.now();
        const { closed } = await converse(Buffer.from(bytes));
        // No valid CONNECT (with a token) can come out of random bytes: the peer must be gone in time.
        expect(closed).toBe(true);
        expect(Date.now() - started).toBeLessThan(CONNECT_TIMEOUT_MS * 5 + 2000);
      },
      { numRuns: 40, timeLimitMs: 6000 },
    );
    expect(dbDigest(app.db, ['fz-canary'])).toBe(before);
    await daemonAlive();
  });

  it('CONNECT flags: every flag byte is either answered with a CONNACK or closed and counted as the rule it breaks', async () => {
    const before = dbDigest(app.db, ['fz-canary']);
    const connectArb = fc.record({
      flags: fc.integer({ min: 0, max: 255 }),
      clientId: fc.oneof(fc.constant('fz-pub'), fc.string({ maxLength: 12 }), fc.constant('fz\u0000pub')),
      willTopic: fc.oneof(fc.constant('fleet/v1/fz-pub/state'), fc.string({ maxLength: 20 })),
      username: fc.oneof(fc.constant('fz-pub'), fc.string({ maxLength: 12 })),
    });
    await fuzz(
      'mqtt.connect-flags',
      [connectArb],
      async ({ flags, clientId, willTopic, username }) => {
        const will = (flags & 0x04) !== 0;
        const willQos = (flags >> 3) & 3;
        const str = (s: string) => {
          const b = Buffer.from(s, 'utf8');
          return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
        };
        const parts = [str('MQTT'), Buffer.from([4, flags, 0, 30]), str(clientId)];
        if (will) parts.push(str(willTopic), str('{"online":false}'));
        if (flags & 0x80) parts.push(str(username));
        // Never the right token: the answer to a well-formed CONNECT is a refusal, and nothing is stored.
        if (flags & 0x40) parts.push(str('not-the-token'));
        // The oracle, written from MQTT 3.1.1 §3.1.2 and §1.5.3 independently of broker/packet-rules.ts.
        const topicBad = will && (willTopic === '' || /[#+\u0000]/.test(willTopic));
        const broken =
          (flags & 0x01) !== 0 || (!will && (willQos !== 0 || (flags & 0x20) !== 0)) || (will && willQos === 3) || ((flags & 0x80) === 0 && (flags & 0x40) !== 0) ||
          clientId.includes('\u0000') || ((flags & 0x80) !== 0 && username.includes('\u0000')) || topicBad;
        const violations = await totalOf('fleet_mqtt_protocol_violations_total');
        const authFailures = await counter('fleet_mqtt_auth_failures_total');
        const { received, closed } = await converse(mqttPacket(0x10, Buffer.concat(parts)), [], (n) => n >= 4);
        if (broken) {
          expect(received.length).toBe(0); // no CONNACK, not even a refusal
          expect(closed).toBe(true);
          expect(await totalOf('fleet_mqtt_protocol_violations_total')).toBe(violations + 1);
        } else {
          expect(received[0]).toBe(0x20); // a CONNACK
          expect(received[3]).not.toBe(0); // refused (wrong or no credentials)
          // An empty client id without a clean session is refused by aedes itself (CONNACK 2) before auth.
          if (!(clientId === '' && (flags & 0x02) === 0)) expect(await counter('fleet_mqtt_auth_failures_total')).toBe(authFailures + 1);
        }
      },
      { numRuns: 120, timeLimitMs: 6000 },
    );
    expect(dbDigest(app.db, ['fz-canary'])).toBe(before);
    await daemonAlive();
  });


  it('topics: a SUBSCRIBE is granted only inside the device\'s own commands, refused with 0x80 elsewhere, and closed and counted when the filter breaks a rule', async () => {
    const levels = fc.oneof(
      fc.constantFrom('fleet', 'v1', 'fz-sub', 'fz-canary', 'cmd', 'patch', '#', '+', '$SYS', '', 'a+b', 'x#', '\u0000', 'é', '\u{1F600}'),
      fc.string({ maxLength: 4 }),
    );
    const filterArb = fc.oneof(
      fc.array(levels, { minLength: 1, maxLength: 6 }).map((l) => l.join('/')),
      fc.array(levels, { minLength: 0, maxLength: 3 }).map((l) => ['fleet', 'v1', 'fz-sub', 'cmd', ...l].join('/')),
    );
    await fuzz(
      'mqtt.subscribe-topics',
      [filterArb, fc.integer({ min: 0, max: 2 })],
      async (filter, qos) => {
        const filterBytes = Buffer.from(filter, 'utf8');
        const sub = mqttPacket(0x82, Buffer.concat([Buffer.from([0, 7, filterBytes.length >> 8, filterBytes.length & 0xff]), filterBytes, Buffer.from([qos])]));
        const levelsOf = filter.split('/');
        const broken =
          filter === '' || filter.includes('\u0000') || levelsOf.some((l, i) => (l.includes('#') && (l !== '#' || i !== levelsOf.length - 1)) || (l.includes('+') && l !== '+'));
        const violations = await totalOf('fleet_mqtt_protocol_violations_total');
        const { received, closed } = await converse(connectPacket('fz-sub', 'fz-sub', tokens['fz-sub']!), [sub], (n) => n >= 9);
        expect([...received.subarray(0, 4)]).toEqual([0x20, 2, 0, 0]);
        const suback = received.subarray(4);
        if (broken) {
          expect(closed).toBe(true);
          expect(suback.length).toBe(0);
          expect(await totalOf('fleet_mqtt_protocol_violations_total')).toBe(violations + 1);
        } else {
          expect(suback[0]).toBe(0x90);
          const granted = suback[4]!;
          if (granted !== 0x80) {
            expect(filter.startsWith('fleet/v1/fz-sub/cmd/')).toBe(true);
            expect(granted).toBeLessThanOrEqual(qos);
          }
        }
      },
      { numRuns: 80, timeLimitMs: 6000 },
    );
    await daemonAlive();
  });

  it('payloads: heartbeats, state and patch status messages of a wrong shape or out of bounds are dropped and counted; the device\'s stored state does not change', async () => {
    const client = await connectDevice(`mqtt://127.0.0.1:${port}`, { id: 'fz-pub', token: tokens['fz-pub']! });
    try {
      const good = { seq: 1, ts: '2026-11-26T17:00:00Z', intervalS: 30, agentVersion: '1.0.0', softwareVersion: '1.0.0' };
      await client.publishAsync('fleet/v1/fz-pub/heartbeat', JSON.stringify(good), { qos: 1 });
      await eventually(() => app.db.prepare("SELECT 1 FROM device_state WHERE device_id = 'fz-pub' AND seq = 1").get(), 5000, 'first heartbeat stored');
      // The evaluator records the device online at its next tick: that is the last legitimate change.
      await eventually(() => app.db.prepare("SELECT 1 FROM events WHERE device_id = 'fz-pub' AND kind = 'online'").get(), 5000, 'online recorded');
      // fz-sub's last sessions of the topics property may still be recorded offline by the evaluator.
      const before = tableDigests(app.db, ['fz-canary', 'fz-sub']);
      // Each case breaks the contract in one field: wrong type, out of bounds, or an impossible date.
      const notNumber = fc.oneof(fc.string({ maxLength: 5 }), fc.boolean(), fc.constant(null), fc.array(fc.integer(), { minLength: 1, maxLength: 2 }));
      const mutation = fc.oneof(
        fc.record({ field: fc.constant('intervalS'), value: fc.oneof(fc.double({ min: -1e308, max: 0.999, noNaN: true }), fc.double({ min: 86_400.001, max: 1e308, noNaN: true }), notNumber) }),
        fc.record({ field: fc.constant('seq'), value: fc.oneof(fc.integer({ max: -1 }), fc.double({ min: 0.1, max: 0.9 }), fc.constant(2 ** 60), notNumber) }),
        fc.record({ field: fc.constant('uptimeS'), value: fc.oneof(fc.double({ min: -1e12, max: -0.001, noNaN: true }), fc.double({ min: 4e9, max: 1e300, noNaN: true }), notNumber) }),
        fc.record({ field: fc.constant('health'), value: fc.record({ cpu: fc.oneof(fc.double({ min: 1.0001, max: 1e9, noNaN: true }), fc.double({ min: -1e9, max: -0.0001, noNaN: true })) }) }),
        fc.record({
          field: fc.constant('ts'),
          value: fc.oneof(
            // Days those months never have (issue 11 fault 7: Date.parse rolls them over).
            fc.tuple(fc.integer({ min: 1970, max: 2100 }), fc.constantFrom('02-30', '02-31', '04-31', '06-31', '09-31', '11-31')).map(([y, md]) => `${y}-${md}T10:00:00Z`),
            fc.string({ maxLength: 10 }),
          ),
        }),
        fc.record({ field: fc.constant('subsystems'), value: fc.oneof(fc.constant(Array.from({ length: 65 }, (_, i) => ({ name: `s${i}`, ok: true }))), notNumber) }),
        fc.record({ field: fc.constant('agentVersion'), value: fc.oneof(fc.constant(''), fc.constant('v'.repeat(65)), fc.integer()) }),
      );
      // State and PatchStatus messages of a wrong shape: the same rule, the same counter.
      const stateOrStatus = fc.oneof(
        fc.record({ topic: fc.constant('state'), value: fc.oneof(fc.record({ online: fc.oneof(fc.string({ maxLength: 4 }), fc.integer(), fc.constant(null)) }), fc.constant([]), fc.constant('x'), fc.constant(null)) }),
        fc.record({
          topic: fc.constant('patch/status'),
          value: fc.oneof(
            fc.record({ patchId: fc.constant('p'.repeat(129)), state: fc.constant('installed') }),
            fc.record({ patchId: fc.string({ minLength: 1, maxLength: 8 }), state: fc.string({ maxLength: 8 }).filter((x) => !['downloading', 'verifying', 'installing', 'installed', 'failed', 'rolled_back', 'rejected', 'cancelled'].includes(x)) }),
            fc.record({ patchId: fc.constant('p'), state: fc.constant('failed'), detail: fc.constant('d'.repeat(1025)) }),
          ),
        }),
      );
      await fuzz(
        'mqtt.state-and-status-shapes',
        [stateOrStatus],
        async ({ topic, value }) => {
          const rejected = await totalOf('fleet_heartbeat_rejected_total');
          await client.publishAsync(`fleet/v1/fz-pub/${topic}`, JSON.stringify(value), { qos: 1 });
          await eventually(async () => (await totalOf('fleet_heartbeat_rejected_total')) === rejected + 1, 5000, `${topic} rejection counted`);
        },
        { numRuns: 30, timeLimitMs: 3000 },
      );
      await fuzz(
        'mqtt.heartbeat-shapes',
        [mutation, fc.integer({ min: 2, max: 1_000_000 })],
        async ({ field, value }, seq) => {
          const rejected = await totalOf('fleet_heartbeat_rejected_total');
          await client.publishAsync('fleet/v1/fz-pub/heartbeat', JSON.stringify({ ...good, seq, [field]: value }), { qos: 1 });
          await eventually(async () => (await totalOf('fleet_heartbeat_rejected_total')) === rejected + 1, 5000, 'heartbeat rejection counted');
          expect(await counter('fleet_heartbeat_rejected_total', { reason: 'schema' })).toBeGreaterThan(0);
        },
        { numRuns: 60, timeLimitMs: 5000 },
      );
      // The device_state writer flushes every ingest.flushIntervalMs: give it one period before comparing.
      await new Promise((r) => setTimeout(r, 700));
      expect(tableDigests(app.db, ['fz-canary', 'fz-sub'])).toEqual(before);
      expect(client.connected).toBe(true);
    } finally {
      await endAll(client);
    }
    await daemonAlive();
  });
});
