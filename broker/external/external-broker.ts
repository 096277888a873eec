import { readFile } from 'node:fs/promises';
import { connectAsync, type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import type { Registry } from 'prom-client';
import type { Config } from '../../src/config/schema.js';
import { ConfigError } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import { DAEMON_FILTERS, parseDeviceTopic, topics, type DeviceTopicKind } from '../../src/protocol/topics.js';
import { parsePayload, stateSchema } from '../../src/protocol/schemas.js';
import { createBrokerMetrics, type BrokerMetrics } from '../broker-metrics.js';
import type { DeviceHandler, DeviceMessageHandler, DeviceTransport } from '../device-transport.js';
import { MOSQUITTO_NOTICE_LOG_TOPIC } from './mosquitto-log.js';
import { subscribeChecked } from './subscribe.js';

export interface ExternalBrokerDeps {
  config: Config['mqtt']['broker'];
  /** This daemon instance (its MQTT client id is `xcared-<instanceId>`). */
  instanceId: string;
  log: Logger;
  metrics: Registry;
  /** Called once per (re)connection to the broker, after the subscriptions are in place (dynsec reconcile). */
  onBrokerConnected?(client: MqttClient): Promise<void> | void;
  /** Close a device's connection: in dynsec mode, deleting its credentials does it (see DynsecDeviceSync). */
  disconnect?(deviceId: string): Promise<void>;
}

/**
 * Subscription identifiers (MQTT 5 §3.8.2.1.2): our share, the plain state view, the leader's heartbeats,
 * the broker's log (Mosquitto: refused CONNECTs, for the evaluator's security signals).
 */
const SUB_SHARE = 1;
const SUB_STATES = 2;
const SUB_HEARTBEATS = 3;
const SUB_BROKER_LOG = 4;

/** Topics a device publishes, as the daemon's own subscriptions see them. */
const INGEST_KINDS = ['heartbeat', 'state', 'patch/status'] as const;

async function readPem(path: string | null, key: string): Promise<Buffer | undefined> {
  if (path === null) return undefined;
  try {
    return await readFile(path);
  } catch (err) {
    throw new ConfigError(`mqtt.broker.${key}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/**
 * External broker mode (issue 13, item 1): xcared starts no broker of its own; it joins an MQTT
 * broker or cluster (Mosquitto, EMQX) as a client and consumes device traffic with shared
 * subscriptions `$share/<group>/fleet/v1/+/heartbeat|state|patch/status`, so N daemons split it.
 *
 * Besides its share, every instance holds a plain subscription to `fleet/v1/+/state` (small: one
 * message per connect and per Last Will, plus the retained ones at subscribe time): that is how each
 * instance knows which devices are connected. In a cluster, the **liveness feed** (`onLivenessMessage`:
 * a plain subscription to heartbeats, plus the states above) is opened only on the leader, so its
 * evaluator sees every sign of life of every device whatever instance stores it (README "At scale": why
 * the leader consumes liveness). A single daemon needs no feed: its share is all the traffic.
 */
export class ExternalBroker implements DeviceTransport {
  private client: MqttClient | undefined;
  private readonly connected = new Set<string>();
  private readonly messageHandlers: DeviceMessageHandler[] = [];
  private readonly livenessHandlers: DeviceMessageHandler[] = [];
  private readonly connectedHandlers: DeviceHandler[] = [];
  private readonly disconnectedHandlers: DeviceHandler[] = [];
  private readonly readyHandlers: DeviceHandler[] = [];
  private readonly logHandlers: ((line: Buffer) => void)[] = [];
  private brokerLog = false;
  private metrics: BrokerMetrics | undefined;
  private liveness = false;
  private subscribedOnce = false;
  private stopping: Promise<void> | undefined;

  constructor(private readonly deps: ExternalBrokerDeps) {}

  /** Connects, subscribes, and resolves once the broker granted every subscription. Rejects when it cannot. */
  async start(): Promise<void> {
    const { config, log } = this.deps;
    this.metrics ??= createBrokerMetrics(this.deps.metrics, () => this.connected.size);
    const [cert, key, ca] = await Promise.all([readPem(config.cert, 'cert'), readPem(config.key, 'key'), readPem(config.ca, 'ca')]);
    const options: IClientOptions = {
      clientId: `xcared-${this.deps.instanceId}`,
      // MQTT 5 for subscription identifiers: they say which of our subscriptions a message came through.
      protocolVersion: 5,
      clean: true,
      reconnectPeriod: 1000,
      connectTimeout: config.timeoutMs,
      // A dead daemon's subscriptions vanish with its session; a slow network must not look dead.
      keepalive: 30,
      ...(config.username ? { username: config.username } : {}),
      ...(config.password ? { password: config.password } : {}),
      ...(cert ? { cert } : {}),
      ...(key ? { key } : {}),
      ...(ca ? { ca, rejectUnauthorized: true } : {}),
    };
    let client: MqttClient;
    try {
      client = await connectAsync(config.url!, options);
    } catch (err) {
      throw new Error(`mqtt.broker.url: cannot connect to ${redactUrl(config.url!)}: ${(err as Error).message}`, { cause: err });
    }
    this.client = client;
    client.on('message', (topic, payload, packet) => this.received(topic, payload, packet));
    client.on('error', (err) => log.warn({ err: err.message }, 'external broker connection error'));
    client.on('offline', () => log.warn('external broker unreachable; reconnecting'));
    client.on('connect', () => {
      // mqtt.js resubscribes by itself; what the daemon must redo after a reconnect is the reconcile.
      if (!this.subscribedOnce) return;
      log.info('external broker connection restored');
      void Promise.resolve(this.deps.onBrokerConnected?.(client)).catch((err: unknown) => log.error({ err }, 'after-reconnect work failed'));
    });
    const group = config.sharedGroup;
    const shared = INGEST_KINDS.map((kind) => `$share/${group}/${DAEMON_FILTERS[filterKey(kind)]}`);
    await this.subscribe(shared, SUB_SHARE);
    await this.subscribe([DAEMON_FILTERS.state], SUB_STATES);
    this.subscribedOnce = true;
    await this.deps.onBrokerConnected?.(client);
    log.info({ url: redactUrl(config.url!), group, clientId: options.clientId }, 'joined the external MQTT broker');
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      const client = this.client;
      if (client) await client.endAsync().catch(() => undefined);
      this.deps.log.info('external broker connection closed');
    })();
    return this.stopping;
  }

  /**
   * Open or close the liveness feed (a plain subscription to every heartbeat and state). The leader
   * opens it before starting the evaluator; a follower never holds it.
   */
  async setLivenessFeed(on: boolean): Promise<void> {
    if (on === this.liveness || !this.client) return;
    this.liveness = on;
    if (on) await this.subscribe([DAEMON_FILTERS.heartbeat], SUB_HEARTBEATS);
    else await this.client.unsubscribeAsync(DAEMON_FILTERS.heartbeat);
  }

  /**
   * Open the broker-log feed: a plain subscription to Mosquitto's notice log (`$SYS/broker/log/N`, with
   * `log_dest topic` in mosquitto.conf). Only the instance whose evaluator runs opens it (a single daemon at
   * start, a cluster's leader once elected), so each line is counted once across the cluster. A broker that
   * refuses the subscription (xcared's role lacks `$SYS/broker/log/#`) is logged, not fatal: security
   * signals from the broker's log are then missing, everything else works.
   */
  async setBrokerLogFeed(on: boolean): Promise<void> {
    if (on === this.brokerLog || !this.client) return;
    this.brokerLog = on;
    if (!on) {
      await this.client.unsubscribeAsync(MOSQUITTO_NOTICE_LOG_TOPIC);
      return;
    }
    let refused: boolean;
    try {
      refused = (await subscribeChecked(this.client, [MOSQUITTO_NOTICE_LOG_TOPIC], { qos: 0, properties: { subscriptionIdentifier: SUB_BROKER_LOG } })).length > 0;
    } catch (err) {
      this.brokerLog = false;
      throw err;
    }
    if (refused) {
      this.brokerLog = false;
      this.deps.log.warn({ topic: MOSQUITTO_NOTICE_LOG_TOPIC }, "the broker refused xcared's subscription to its log: refused CONNECTs will not reach the evaluator (give xcared's role subscribePattern and publishClientReceive on $SYS/broker/log/#)");
      return;
    }
    this.deps.log.info({ topic: MOSQUITTO_NOTICE_LOG_TOPIC }, 'broker log feed open');
  }

  /** Each payload of the broker's notice log while the broker-log feed is open (one line per message). */
  onBrokerLog(handler: (line: Buffer) => void): void {
    this.logHandlers.push(handler);
  }

  onDeviceMessage(handler: DeviceMessageHandler): void {
    this.messageHandlers.push(handler);
  }

  /** Heartbeats and states of every device, while the liveness feed is open. */
  onLivenessMessage(handler: DeviceMessageHandler): void {
    this.livenessHandlers.push(handler);
  }

  onClientConnected(handler: DeviceHandler): void {
    this.connectedHandlers.push(handler);
  }

  onClientDisconnected(handler: DeviceHandler): void {
    this.disconnectedHandlers.push(handler);
  }

  /** A live (not retained) `{"online":true}`: agents publish it only once their cmd/ subscription is in place. */
  onDeviceReady(handler: DeviceHandler): void {
    this.readyHandlers.push(handler);
  }

  /** Our view from the states: online and not yet gone (the agent's online state follows its SUBACK). */
  isReady(deviceId: string): boolean {
    return this.connected.has(deviceId);
  }

  async publishToDevice(deviceId: string, payload: Buffer | string): Promise<void> {
    const client = this.client;
    if (!client || this.stopping || !client.connected) throw new Error('external broker is not connected');
    await client.publishAsync(topics.cmdPatch(deviceId), typeof payload === 'string' ? Buffer.from(payload) : payload, { qos: 1 });
  }

  disconnectDevice(deviceId: string): void {
    const disconnect = this.deps.disconnect;
    if (!disconnect) {
      this.deps.log.warn({ deviceId }, 'revoked device stays connected until the broker refuses its next CONNECT (no broker-side disconnect configured)');
      return;
    }
    disconnect(deviceId).catch((err: unknown) =>
      this.deps.log.error({ err, deviceId }, 'could not close the revoked device\'s connection at the broker; the next reconcile retries'),
    );
  }

  isConnected(deviceId: string): boolean {
    return this.connected.has(deviceId);
  }

  connectedCount(): number {
    return this.connected.size;
  }

  ports(): { mqtt?: number; mqtts?: number } {
    return {};
  }

  /** fleet_mqtt_auth_failures_total: refusals the broker reported through the auth hook. */
  countAuthFailure(): void {
    this.metrics?.authFailures.inc();
  }

  /** fleet_mqtt_acl_denied_total: denials the broker reported through the ACL hook. */
  countAclDenied(): void {
    this.metrics?.aclDenied.inc();
  }

  healthy(): boolean {
    return this.client?.connected === true && !this.stopping;
  }

  /** The raw MQTT client, for the dynsec control channel (same connection, same credentials). */
  mqttClient(): MqttClient | undefined {
    return this.client;
  }

  private async subscribe(filters: string[], subscriptionIdentifier: number): Promise<void> {
    const refused = await subscribeChecked(this.client!, filters, { qos: 1, properties: { subscriptionIdentifier } });
    if (refused.length > 0) throw new Error(`the external broker refused xcared's subscriptions ${refused.join(', ')}: give its user read access to fleet/v1/#`);
  }

  /**
   * One delivery per matching subscription, told apart by its MQTT 5 subscription identifier (a broker
   * may also merge them into one delivery listing several identifiers, [MQTT-3.3.4-3]/[MQTT-3.3.4-5]).
   */
  private received(topic: string, payload: Buffer, packet: IPublishPacket): void {
    if (topic === MOSQUITTO_NOTICE_LOG_TOPIC) {
      if (this.brokerLog) this.brokerLogLine(payload, packet);
      return;
    }
    const parsed = parseDeviceTopic(topic);
    if (!parsed || parsed.kind === 'cmd/patch') return;
    const { deviceId, kind } = parsed;
    const raw = packet.properties?.subscriptionIdentifier;
    const ids = Array.isArray(raw) ? raw : raw === undefined ? [] : [raw];
    for (const id of ids) {
      if (id === SUB_SHARE) this.emit(this.messageHandlers, deviceId, kind, payload);
      else if (id === SUB_STATES) {
        this.trackState(deviceId, payload, packet.retain);
        // Retained states replayed at subscribe time are past news: the evaluator gives every device a
        // fresh interval at its start, as after a restart.
        if (this.liveness && !packet.retain) this.emit(this.livenessHandlers, deviceId, kind, payload);
      } else if (id === SUB_HEARTBEATS && this.liveness) this.emit(this.livenessHandlers, deviceId, kind, payload);
    }
  }

  private brokerLogLine(payload: Buffer, packet: IPublishPacket): void {
    const raw = packet.properties?.subscriptionIdentifier;
    const ids = Array.isArray(raw) ? raw : raw === undefined ? [] : [raw];
    // Only what came through our log subscription (the broker's own publication, not a retained leftover).
    if (!ids.includes(SUB_BROKER_LOG) || packet.retain) return;
    for (const handler of this.logHandlers) {
      try {
        handler(payload);
      } catch (err) {
        this.deps.log.error({ err }, 'broker log handler failed');
      }
    }
  }

  private trackState(deviceId: string, payload: Buffer, retained: boolean): void {
    const parsed = parsePayload(stateSchema, payload);
    if (!parsed.ok) return;
    // Every live online state is a (re)connect whose subscription is in place, transition or not.
    const ready = parsed.value.online && !retained;
    const was = this.connected.has(deviceId);
    if (parsed.value.online && !was) {
      this.connected.add(deviceId);
      for (const h of this.connectedHandlers) this.safely(h, deviceId);
    } else if (!parsed.value.online && was) {
      this.connected.delete(deviceId);
      for (const h of this.disconnectedHandlers) this.safely(h, deviceId);
    }
    if (ready) for (const h of this.readyHandlers) this.safely(h, deviceId);
  }

  private emit(handlers: DeviceMessageHandler[], deviceId: string, kind: DeviceTopicKind, payload: Buffer): void {
    for (const handler of handlers) {
      try {
        handler(deviceId, kind, payload);
      } catch (err) {
        this.deps.log.error({ err, deviceId, kind }, 'device message handler failed');
      }
    }
  }

  private safely(handler: DeviceHandler, deviceId: string): void {
    try {
      handler(deviceId);
    } catch (err) {
      this.deps.log.error({ err, deviceId }, 'connection handler failed');
    }
  }
}

function filterKey(kind: (typeof INGEST_KINDS)[number]): keyof typeof DAEMON_FILTERS {
  return kind === 'patch/status' ? 'patchStatus' : kind;
}

/**
 * A broker or store URL for logs and errors, without a password in it: the user info's password (up to the
 * last `@`, as URL parsers read it, so a password with an `@` is hidden whole) and query parameters that carry
 * secrets (`?password=`, which libpq and pg read, `sslpassword`...) become `***`. An unparsable URL keeps only
 * its scheme.
 */
export function redactUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return `${/^[a-z][a-z0-9+.-]*:/i.exec(url)?.[0] ?? ''}//***`;
  }
  if (u.password) u.password = '***';
  for (const key of [...u.searchParams.keys()]) if (/pass|secret|token|key/i.test(key)) u.searchParams.set(key, '***');
  return u.toString();
}
