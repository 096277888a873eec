/**
 * The edge agent against a real, bare aedes broker on an ephemeral port (no daemon): the MQTT
 * behaviour of PROTOCOL.md "MQTT 3.1.1" as the agent implements it. The agent runs in-process.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Aedes, type AedesPublishPacket, type AuthenticateError, type Client } from 'aedes';
import { afterEach, describe, expect, it } from 'vitest';
import { parseAgentConfig, type AgentConfig } from '../../agent/config.js';
import { EdgeAgent, NO_PATCH_SUPPORT } from '../../agent/edge-agent.js';
import { createAgentLogger, type AgentLogger } from '../../agent/log.js';
import type { PatchPort, PatchPortDeps } from '../../agent/patch-port.js';
import { computeTreeDigest } from '../../patches/tree-digest.js';
import { heartbeatSchema, patchStatusSchema } from '../../src/protocol/schemas.js';
import { topics } from '../../src/protocol/topics.js';
import { selfSignedCert } from '../helpers/tls-cert.js';
import { toolsMissing } from '../helpers/system-tools.js';
import type { Heartbeat, PatchStatus } from '../../src/protocol/types.js';

const DEVICE = 'gw-test-1';
const TOKEN = 'correct-horse-battery-staple';

interface TestBroker {
  broker: Aedes;
  server: Server;
  port: number;
  published: AedesPublishPacket[];
  clients: Client[];
  authAttempts: number[];
  close(): Promise<void>;
}

async function startBroker(port = 0, tls?: { cert: Buffer; key: Buffer }): Promise<TestBroker> {
  const published: AedesPublishPacket[] = [];
  const clients: Client[] = [];
  const authAttempts: number[] = [];
  const broker = await Aedes.createBroker({
    authenticate(client, username, password, done) {
      authAttempts.push(Date.now());
      if (client.id === DEVICE && username === DEVICE && password?.toString() === TOKEN) return done(null, true);
      const err = new Error('not authorized') as AuthenticateError;
      err.returnCode = 5;
      done(err, null);
    },
  });
  broker.on('publish', (packet) => {
    if (!packet.topic.startsWith('$SYS')) published.push(packet);
  });
  broker.on('clientReady', (client) => clients.push(client));
  const server = tls ? createTlsServer({ cert: tls.cert, key: tls.key }, broker.handle) : createServer(broker.handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return {
    broker,
    server,
    port: (server.address() as AddressInfo).port,
    published,
    clients,
    authAttempts,
    async close() {
      await new Promise<void>((r) => broker.close(() => r()));
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

// Deadlines only bound a wait (a busy CI machine is slow; issue 10): the probes decide, and pass at once when idle.
function waitFor<T>(what: string, probe: () => T | undefined | false, timeoutMs = 30_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const tick = () => {
      const value = probe();
      if (value !== undefined && value !== false) return resolve(value);
      if (Date.now() - started > timeoutMs) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 10);
    };
    tick();
  });
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

function makeConfig(port: number, extra: Record<string, unknown> = {}): AgentConfig {
  const dir = mkdtempSync(join(tmpdir(), 'agent-it-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'app'));
  writeFileSync(join(dir, 'app', 'main.js'), 'console.log("hi")\n');
  writeFileSync(join(dir, 'VERSION'), '2.3.1\n');
  return parseAgentConfig(
    {
      deviceId: DEVICE,
      deviceType: 'gateway',
      token: TOKEN,
      brokerUrl: `mqtt://127.0.0.1:${port}`,
      intervalS: 0.2,
      stateDir: 'state',
      softwareVersionFile: 'VERSION',
      softwareDir: 'app',
      reconnect: { minMs: 50, maxMs: 400 },
      subsystems: [{ name: 'uplink', command: 'echo up', timeoutMs: 2000 }],
      ...extra,
    },
    dir,
  );
}

function captureLog(): { log: AgentLogger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const log = createAgentLogger({ level: 'debug', write: (l) => lines.push(JSON.parse(l) as Record<string, unknown>) });
  return { log, lines };
}

function startAgent(config: AgentConfig, extra: Partial<ConstructorParameters<typeof EdgeAgent>[0]> = {}) {
  const { log, lines } = captureLog();
  const agent = new EdgeAgent({ config, log, random: () => 0.5, ...extra });
  agent.start();
  cleanups.push(() => agent.stop());
  return { agent, lines };
}

const on = (b: TestBroker, topic: string) => b.published.filter((p) => p.topic === topic);
const json = (p: AedesPublishPacket) => JSON.parse(p.payload.toString()) as Record<string, unknown>;
const heartbeatsOf = (b: TestBroker) => on(b, topics.heartbeat(DEVICE)).map((p) => json(p) as unknown as Heartbeat);

describe('edge agent over a real aedes broker', () => {
  it('publishes retained online state, subscribes to cmd/#, and sends valid QoS 1 heartbeats with rising seq', async () => {
    const b = await startBroker();
    cleanups.push(() => b.close());
    const subscribed: string[] = [];
    const order: string[] = [];
    b.broker.on('subscribe', (subs) => {
      subscribed.push(...subs.map((s) => `${s.topic}@${s.qos}`));
      order.push('subscribe');
    });
    b.broker.on('publish', (packet, client) => {
      if (client && packet.topic === topics.state(DEVICE)) order.push('online');
    });
    const config = makeConfig(b.port);
    startAgent(config);

    await waitFor('3 heartbeats', () => on(b, topics.heartbeat(DEVICE)).length >= 3);
    // Issue 9 fault 1: the online state comes only after cmd/# is subscribed, so a daemon behind an external
    // broker may read it as "this device can receive commands now".
    expect(order.slice(0, 2)).toEqual(['subscribe', 'online']);
    const state = on(b, topics.state(DEVICE))[0]!;
    expect(json(state)).toEqual({ online: true });
    expect(state.retain).toBe(true);
    expect(state.qos).toBe(1);
    expect(subscribed).toContain(`${topics.cmdFilter(DEVICE)}@1`);

    const packets = on(b, topics.heartbeat(DEVICE));
    for (const p of packets) {
      expect(p.qos).toBe(1);
      expect(p.retain).toBe(false);
      const parsed = heartbeatSchema.safeParse(json(p));
      expect(parsed.success, JSON.stringify(parsed.error?.issues)).toBe(true);
    }
    const beats = heartbeatsOf(b);
    expect(beats.map((h) => h.seq)).toEqual(beats.map((_, i) => i + 1));
    expect(beats[0]).toMatchObject({
      intervalS: 1, // announced: at least MIN_INTERVAL_S although it beats every 0.2 s
      softwareVersion: '2.3.1',
      integrity: await computeTreeDigest(config.softwareDir),
      subsystems: [{ name: 'uplink', ok: true, detail: 'up' }],
    });
    expect(new Set(beats.map((h) => h.bootId)).size).toBe(1);
  });

  it('the broker publishes the Last Will {"online":false} when the connection dies, and the agent comes back', async () => {
    const b = await startBroker();
    cleanups.push(() => b.close());
    startAgent(makeConfig(b.port));
    await waitFor('first heartbeat', () => on(b, topics.heartbeat(DEVICE)).length >= 1);

    b.clients[0]!.conn.destroy();
    const will = await waitFor('the will', () => on(b, topics.state(DEVICE)).find((p) => json(p).online === false));
    expect(will.retain).toBe(true);
    expect(will.qos).toBe(1);

    await waitFor('online again', () => on(b, topics.state(DEVICE)).filter((p) => json(p).online === true).length >= 2);
    const before = heartbeatsOf(b).length;
    await waitFor('heartbeats after the reconnect', () => heartbeatsOf(b).length >= before + 2);
  });

  it('reconnects with backoff to a broker restarted on the same port', async () => {
    const first = await startBroker();
    const port = first.port;
    const { lines } = startAgent(makeConfig(port));
    await waitFor('first heartbeat', () => on(first, topics.heartbeat(DEVICE)).length >= 1);
    await first.close();

    // Let a few attempts fail against the closed port, then bring the broker back.
    await waitFor('failed reconnect attempts', () => lines.filter((l) => l.msg === 'reconnecting').length >= 3);
    const delays = lines.filter((l) => l.msg === 'reconnecting').map((l) => l.inMs as number);
    // random() = 0.5: half of min(maxMs, minMs * 2^attempt) = 25, 50, 100, 200, 200...
    expect(delays.slice(0, 3)).toEqual([25, 50, 100]);

    const second = await startBroker(port);
    cleanups.push(() => second.close());
    await waitFor('heartbeat on the new broker', () => on(second, topics.heartbeat(DEVICE)).length >= 1, 30_000);
    // The online state follows the SUBACK of cmd/# (PROTOCOL.md "Delivery of daemon -> device commands").
    await waitFor('online state on the new broker', () => on(second, topics.state(DEVICE)).length >= 1, 30_000);
    expect(json(on(second, topics.state(DEVICE))[0]!)).toEqual({ online: true });
    // after a successful connect the backoff starts over
    const attemptsBefore = lines.filter((l) => l.msg === 'reconnecting').length;
    second.clients[0]!.conn.destroy();
    await waitFor('next reconnect', () => lines.filter((l) => l.msg === 'reconnecting').length > attemptsBefore);
    const after = lines.filter((l) => l.msg === 'reconnecting').map((l) => l.inMs as number);
    expect(after[attemptsBefore]).toBe(25);
  });

  it('a hung probe never stops heartbeats', async () => {
    const b = await startBroker();
    cleanups.push(() => b.close());
    startAgent(
      makeConfig(b.port, {
        subsystems: [
          { name: 'hung', command: 'sleep 60', timeoutMs: 150 },
          { name: 'fine', command: 'echo ok', timeoutMs: 1000 },
        ],
        sensors: [{ id: 'sen-1', command: 'exit 1', timeoutMs: 1000 }],
      }),
    );
    await waitFor('5 heartbeats', () => heartbeatsOf(b).length >= 5, 30_000);
    for (const hb of heartbeatsOf(b)) {
      expect(hb.subsystems).toEqual([
        { name: 'hung', ok: false, detail: 'timed out after 150 ms' },
        { name: 'fine', ok: true, detail: 'ok' },
      ]);
      expect(hb.sensors).toEqual([{ id: 'sen-1', ok: false, detail: 'exit 1' }]);
    }
  });

  it('answers a patch offer with "rejected" when no patch port is configured', async () => {
    const b = await startBroker();
    cleanups.push(() => b.close());
    const { lines } = startAgent(makeConfig(b.port));
    await waitFor('first heartbeat', () => heartbeatsOf(b).length >= 1);

    const manifest = Buffer.from(JSON.stringify({ id: 'gw-2.3.2', version: '2.3.2' })).toString('base64');
    const offer = { rolloutId: 'r-1', manifest, signature: 'c2ln', url: '/patches/gw-2.3.2/artifact' };
    b.broker.publish({ cmd: 'publish', topic: topics.cmdPatch(DEVICE), payload: Buffer.from(JSON.stringify(offer)), qos: 1, retain: false, dup: false }, () => {});

    const status = await waitFor('patch status', () => on(b, topics.patchStatus(DEVICE))[0]);
    expect(status.qos).toBe(1);
    const parsed = patchStatusSchema.parse(json(status));
    expect(parsed).toEqual({ rolloutId: 'r-1', patchId: 'gw-2.3.2', state: 'rejected', detail: NO_PATCH_SUPPORT });
    expect(lines.some((l) => l.level === 'warn' && String(l.msg).includes('patch support is not configured'))).toBe(true);
  });

  it('with a patch port: offers go to it, its status is published, and an install heartbeats the new version at once', async () => {
    const b = await startBroker();
    cleanups.push(() => b.close());
    const config = makeConfig(b.port, { intervalS: 30, patches: { keys: ['k.pem'] } });
    const offers: string[] = [];
    let deps: PatchPortDeps | undefined;
    let connects = 0;
    const port: PatchPort = {
      handleOffer: (payload) => offers.push(payload.toString()),
      heartbeatField: () => ({ rolloutId: 'r-9', patchId: 'gw-9', state: 'installed' }),
      onConnected: () => void connects++,
      stop: async () => {},
    };
    startAgent(config, {
      patchPortFactory: (d) => {
        deps = d;
        return port;
      },
    });
    await waitFor('first heartbeat', () => heartbeatsOf(b).length >= 1);
    expect(connects).toBe(1);
    expect(deps).toMatchObject({ deviceId: DEVICE, deviceType: 'gateway', token: TOKEN, settings: { keys: ['k.pem'] } });
    expect(deps!.currentVersion()).toBe('2.3.1');
    expect(heartbeatsOf(b)[0]!.patch).toEqual({ rolloutId: 'r-9', patchId: 'gw-9', state: 'installed' });

    b.broker.publish({ cmd: 'publish', topic: topics.cmdPatch(DEVICE), payload: Buffer.from('{"x":1}'), qos: 1, retain: false, dup: false }, () => {});
    await waitFor('offer delivered', () => offers.length === 1);
    expect(on(b, topics.patchStatus(DEVICE))).toHaveLength(0);

    const status: PatchStatus = { rolloutId: 'r-9', patchId: 'gw-9', state: 'downloading' };
    deps!.publishStatus(status);
    await waitFor('status published', () => on(b, topics.patchStatus(DEVICE)).length === 1);
    expect(json(on(b, topics.patchStatus(DEVICE))[0]!)).toEqual(status);

    // The "install": new version and a changed tree; intervalS is 30 s, so only onInstalled can trigger this beat.
    await new Promise((r) => setTimeout(r, 20));
    writeFileSync(config.softwareVersionFile, '2.3.2\n');
    writeFileSync(join(config.softwareDir, 'main.js'), 'console.log("patched")\n');
    deps!.onInstalled();
    const hb = await waitFor('heartbeat after install', () => heartbeatsOf(b)[1]);
    expect(hb.softwareVersion).toBe('2.3.2');
    expect(hb.integrity).toBe(await computeTreeDigest(config.softwareDir));
    expect(hb.integrity).not.toBe(heartbeatsOf(b)[0]!.integrity);
  });

  it('a patch port factory that throws leaves the agent heartbeating and rejecting offers', async () => {
    const b = await startBroker();
    cleanups.push(() => b.close());
    const { lines } = startAgent(makeConfig(b.port), {
      patchPortFactory: () => {
        throw new Error('bad patch settings');
      },
    });
    await waitFor('2 heartbeats', () => heartbeatsOf(b).length >= 2);
    expect(lines.some((l) => l.level === 'error' && String(l.msg).includes('patch support failed to start'))).toBe(true);
    b.broker.publish({ cmd: 'publish', topic: topics.cmdPatch(DEVICE), payload: Buffer.from('{}'), qos: 1, retain: false, dup: false }, () => {});
    const status = await waitFor('patch status', () => on(b, topics.patchStatus(DEVICE))[0]);
    expect(json(status)).toEqual({ patchId: 'unknown', state: 'rejected', detail: NO_PATCH_SUPPORT });
  });

  it('picks up a re-provisioned tokenFile on the next retry, without a restart', async () => {
    const b = await startBroker();
    cleanups.push(() => b.close());
    const base = makeConfig(b.port);
    const tokenFile = join(base.softwareDir, '..', 'agent.token');
    writeFileSync(tokenFile, 'old-revoked-token\n');
    const { token: _t, ...rest } = { ...base };
    startAgent({ ...rest, token: 'old-revoked-token', tokenFile });
    await waitFor('a refused attempt', () => b.authAttempts.length >= 1);
    expect(heartbeatsOf(b)).toHaveLength(0);
    writeFileSync(tokenFile, `${TOKEN}\n`);
    await waitFor('a heartbeat with the new token', () => heartbeatsOf(b).length >= 1, 30_000);
  });

  it('stop() publishes retained {"online":false} itself and disconnects cleanly', async () => {
    const b = await startBroker();
    cleanups.push(() => b.close());
    const disconnected: string[] = [];
    b.broker.on('clientDisconnect', (c) => disconnected.push(c.id));
    const { agent } = startAgent(makeConfig(b.port));
    await waitFor('first heartbeat', () => heartbeatsOf(b).length >= 1);
    await agent.stop();
    await waitFor('clean disconnect', () => disconnected.includes(DEVICE));
    const offline = on(b, topics.state(DEVICE)).filter((p) => json(p).online === false);
    expect(offline).toHaveLength(1); // ours, not a will as well
    expect(offline[0]!.retain).toBe(true);
    const count = heartbeatsOf(b).length;
    await new Promise((r) => setTimeout(r, 500));
    expect(heartbeatsOf(b).length).toBe(count);
  });

  it.skipIf(toolsMissing(['openssl'], 'openssl').length > 0)('connects over mqtts:// with the configured CA, and refuses a broker it cannot verify without it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'agent-tls-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const cert = await selfSignedCert(dir);
    const b = await startBroker(0, { cert: cert.cert, key: readFileSync(cert.keyPath) });
    cleanups.push(() => b.close());

    const untrusting = startAgent(makeConfig(b.port, { brokerUrl: `mqtts://127.0.0.1:${b.port}` }));
    await waitFor('a TLS failure', () => untrusting.lines.find((l) => l.msg === 'connection error'));
    await untrusting.agent.stop();
    expect(heartbeatsOf(b)).toHaveLength(0);

    startAgent(makeConfig(b.port, { brokerUrl: `mqtts://127.0.0.1:${b.port}`, ca: cert.certPath }));
    await waitFor('a heartbeat over TLS', () => heartbeatsOf(b).length >= 1);
  });

  it('a refused token (CONNACK 5) is logged clearly and retried at maxMs', async () => {
    const b = await startBroker();
    cleanups.push(() => b.close());
    const { lines } = startAgent({ ...makeConfig(b.port), token: 'wrong-token' });
    await waitFor('three attempts', () => b.authAttempts.length >= 3, 30_000);
    const gaps = b.authAttempts.slice(1).map((t, i) => t - b.authAttempts[i]!);
    for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(380); // maxMs = 400, minus timer slack
    expect(lines.some((l) => l.level === 'error' && String(l.msg).includes('refused the device credentials'))).toBe(true);
    expect(lines.filter((l) => l.msg === 'reconnecting').every((l) => l.inMs === 400)).toBe(true);
    expect(heartbeatsOf(b)).toHaveLength(0);
  });
});
