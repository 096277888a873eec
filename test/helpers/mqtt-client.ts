import { EventEmitter } from 'node:events';
import { connect, type IClientOptions, type ISubscriptionGrant, type MqttClient } from 'mqtt';
import { Registry } from 'prom-client';
import { FleetBroker, type SecurityEvent } from '../../broker/fleet-broker.js';
import { configSchema, type ConfigInput } from '../../src/config/schema.js';
import { silentLogger } from '../../src/log.js';
import type { DeviceTopicKind } from '../../src/protocol/topics.js';

/**
 * Small helpers around a real MQTT.js client for integration tests: connect and learn the CONNACK
 * return code, subscribe and read the SUBACK grants, await the connection closing. No retries:
 * reconnectPeriod 0, MQTT 3.1.1 unless a test asks otherwise.
 */
export interface DeviceLogin {
  id: string;
  token: string;
  /** Defaults to `id`; set it to test clientId spoofing. */
  clientId?: string;
  will?: IClientOptions['will'];
  protocolVersion?: 3 | 4 | 5;
  ca?: Buffer;
}

export type ConnectOutcome = { ok: true; client: MqttClient } | { ok: false; code: number | undefined; error: Error };

/** Connects; resolves with the client on CONNACK 0, or with the refusal's return code. */
export function tryConnect(url: string, login: DeviceLogin, extra: IClientOptions = {}): Promise<ConnectOutcome> {
  const client = connect(url, {
    clientId: login.clientId ?? login.id,
    username: login.id,
    password: login.token,
    protocolVersion: login.protocolVersion ?? 4,
    reconnectPeriod: 0,
    connectTimeout: 5000,
    clean: true,
    ...(login.will ? { will: login.will } : {}),
    ...(login.ca ? { ca: login.ca, rejectUnauthorized: true } : {}),
    ...extra,
  });
  return new Promise((resolve) => {
    const onConnect = () => {
      client.off('error', onError);
      client.off('close', onClose);
      resolve({ ok: true, client });
    };
    const onError = (error: Error & { code?: number | string }) => {
      client.off('connect', onConnect);
      client.off('close', onClose);
      client.end(true);
      resolve({ ok: false, code: typeof error.code === 'number' ? error.code : undefined, error });
    };
    const onClose = () => {
      client.off('connect', onConnect);
      client.off('error', onError);
      client.end(true);
      resolve({ ok: false, code: undefined, error: new Error('connection closed before CONNACK') });
    };
    client.once('connect', onConnect);
    client.once('error', onError);
    client.once('close', onClose);
  });
}

/** Connects and throws unless the broker accepted. */
export async function connectDevice(url: string, login: DeviceLogin, extra: IClientOptions = {}): Promise<MqttClient> {
  const outcome = await tryConnect(url, login, extra);
  if (!outcome.ok) throw new Error(`CONNECT refused (code ${outcome.code}): ${outcome.error.message}`);
  return outcome.client;
}

/**
 * One SUBSCRIBE with `filters` at QoS 1; returns the SUBACK's return code per filter, in order
 * (128 = refused, MQTT 3.1.1 §3.9.3). MQTT.js turns any 0x80 into an error carrying the SUBACK.
 */
export async function subscribeGrants(client: MqttClient, filters: string[]): Promise<number[]> {
  try {
    const grants: ISubscriptionGrant[] = await client.subscribeAsync(filters, { qos: 1 });
    return filters.map((f) => grants.find((g) => g.topic === f)?.qos ?? -1);
  } catch (err) {
    const granted = (err as { packet?: { granted?: number[] } }).packet?.granted;
    if (!granted) throw err;
    return granted;
  }
}

/** Resolves when the client's connection is closed (by the broker or the client). */
export function closed(client: MqttClient): Promise<void> {
  if (!client.connected && client.disconnected) return Promise.resolve();
  return new Promise((resolve) => client.once('close', () => resolve()));
}

export async function endAll(...clients: Array<MqttClient | undefined>): Promise<void> {
  await Promise.all(clients.map((c) => (c ? c.endAsync(true).catch(() => {}) : undefined)));
}

// ---------------------------------------------------------------------------------------------
// A real FleetBroker on loopback port 0 with an in-test device map, for broker/ingest tests.

export interface BrokerFixture {
  broker: FleetBroker;
  /** mqtt://127.0.0.1:<port> (undefined when only TLS listens). */
  url: string;
  metrics: Registry;
  /** id -> token; delete an entry to "revoke" the device. */
  devices: Map<string, string>;
  messages: Array<{ deviceId: string; kind: DeviceTopicKind; payload: string }>;
  securityEvents: SecurityEvent[];
  connected: string[];
  disconnected: string[];
  /** Resolves with the first recorded message matching `match` (already seen or future). */
  waitMessage(match: (m: { deviceId: string; kind: DeviceTopicKind; payload: string }) => boolean): Promise<{ deviceId: string; kind: DeviceTopicKind; payload: string }>;
  /** Value of a metric family without labels, from the registry. */
  metric(name: string): Promise<number>;
  stop(): Promise<void>;
}

/** `authDelayMs`: each token check answers after this long, as on a loaded daemon (CONNECTs pile up meanwhile). */
export async function startFleetBroker(
  devices: Record<string, string>,
  mqtt: ConfigInput['mqtt'] = {},
  options: { authDelayMs?: number } = {},
): Promise<BrokerFixture> {
  const config = configSchema.parse({ mqtt: { host: '127.0.0.1', port: 0, ...mqtt, tls: { port: 0, ...mqtt.tls } } });
  const metrics = new Registry();
  const table = new Map(Object.entries(devices));
  const events = new EventEmitter();
  const fixture: BrokerFixture = {
    broker: new FleetBroker({
      config: config.mqtt,
      log: silentLogger(),
      metrics,
      authenticate: async (id, token) => {
        if (options.authDelayMs) await new Promise((r) => setTimeout(r, options.authDelayMs));
        return table.get(id) === token;
      },
      onSecurityEvent: (e) => fixture.securityEvents.push(e),
    }),
    url: '',
    metrics,
    devices: table,
    messages: [],
    securityEvents: [],
    connected: [],
    disconnected: [],
    waitMessage(match) {
      const seen = fixture.messages.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve) => {
        const check = (m: BrokerFixture['messages'][number]) => {
          if (!match(m)) return;
          events.off('message', check);
          resolve(m);
        };
        events.on('message', check);
      });
    },
    async metric(name) {
      const family = await metrics.getSingleMetric(name)?.get();
      return family?.values[0]?.value ?? Number.NaN;
    },
    stop: () => fixture.broker.stop(),
  };
  fixture.broker.onDeviceMessage((deviceId, kind, payload) => {
    const m = { deviceId, kind, payload: payload.toString('utf8') };
    fixture.messages.push(m);
    events.emit('message', m);
  });
  fixture.broker.onClientConnected((id) => fixture.connected.push(id));
  fixture.broker.onClientDisconnected((id) => fixture.disconnected.push(id));
  await fixture.broker.start();
  const port = fixture.broker.ports().mqtt;
  fixture.url = port === undefined ? '' : `mqtt://127.0.0.1:${port}`;
  return fixture;
}

// Raw MQTT bytes live in mqtt-packets.ts; re-exported for the tests that import them from here.
export { remainingLength } from './mqtt-packets.js';
import { connectPacket } from './mqtt-packets.js';

/** An MQTT 3.1.1 CONNECT with clean session, username and password, keepalive 60 s. */
export function rawConnect(clientId: string, username: string, password: string): Buffer {
  return connectPacket(clientId, username, password, 60);
}
