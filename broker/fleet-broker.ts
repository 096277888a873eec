import { createServer as createNetServer, type Server as NetServer, type Socket, type AddressInfo } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { Aedes, type AedesPublishPacket, type AuthenticateError, type Client, type ConnectPacket, type PublishPacket, type Subscription } from 'aedes';
import type { EventEmitter } from 'node:events';
import type { Registry } from 'prom-client';
import type { Config } from '../src/config/schema.js';
import type { Logger } from '../src/log.js';
import { isDeviceId } from '../src/protocol/names.js';
import { topics, type DeviceTopicKind } from '../src/protocol/topics.js';
import { authorizePublish, authorizeSubscribe, authorizeWill, deviceTopicKind } from './acl.js';
import { checkConnectIdentity } from './connect-policy.js';
import { createBrokerMetrics, type BrokerMetrics } from './broker-metrics.js';
import { limitInbound, type InboundLimit, type Violation } from './packet-limit.js';
import { loadTlsOptions, tlsConfigured } from './tls-options.js';
import { listenError } from '../src/errors.js';
import { ConnectionGuard, rawSocketOf } from './connection-guard.js';

export type SecurityEvent = { kind: 'auth_failure' | 'acl_violation'; deviceId?: string; topic?: string; remote?: string };

export interface BrokerDeps {
  config: Config['mqtt'];
  log: Logger;
  metrics: Registry;
  /**
   * The registry's verifyDeviceToken: true/'ok' when the device exists, is not revoked and the token
   * matches; 'throttled' when `source` spent its allowance of failures (refused without a token check);
   * 'retired' when it is the device's own token from before a recent rotation or revocation (refused, no signal).
   */
  authenticate(deviceId: string, token: string, source?: string): Promise<boolean | 'ok' | 'refused' | 'throttled' | 'retired'>;
  /**
   * false: close a new connection from this address at once (the registry's admitsSource: a source
   * throttled for failed authentications). Absent: every source is admitted.
   */
  admitSource?(remote: string | undefined): boolean;
  /** security signals for the health evaluator (bursts of failed CONNECTs, ACL violations) */
  onSecurityEvent?(e: SecurityEvent): void;
}

export type DeviceMessageHandler = (deviceId: string, kind: DeviceTopicKind, payload: Buffer) => void;
type DeviceHandler = (deviceId: string) => void;

/** CONNECT return codes of MQTT 3.1.1 §3.2.2.3 that the broker answers with. */
const NOT_AUTHORIZED = 5;
const SERVER_UNAVAILABLE = 3;

/** What preConnect saw in the CONNECT packet; aedes' authenticate hook gets only username/password. */
interface ConnectInfo {
  protocolVersion: number;
  will: ConnectPacket['will'];
}

function refusal(returnCode: number): AuthenticateError {
  // The message stays generic: it is what aedes logs/emits, never a reason sent to the client.
  return Object.assign(new Error('not authorized'), { returnCode }) as AuthenticateError;
}

function remoteOf(client: Client): string | undefined {
  const conn = client.conn as { remoteAddress?: string };
  return conn.remoteAddress;
}

/**
 * The embedded MQTT broker (aedes 1.x) with the device rules of PROTOCOL.md "MQTT 3.1.1": device
 * auth (clientId == username == device id, token checked by the registry), topic ACLs on publish,
 * subscribe and the Last Will, a maximum packet size checked on the declared length, and in-process
 * delivery of device messages to the daemon (no internal MQTT client on the hot path).
 */
export class FleetBroker {
  private aedes: Aedes | undefined;
  private readonly servers: Array<NetServer | TlsServer> = [];
  private readonly clients = new Map<string, Client>();
  private readonly connectInfo = new WeakMap<Client, ConnectInfo>();
  private readonly messageHandlers: DeviceMessageHandler[] = [];
  private readonly connectedHandlers: DeviceHandler[] = [];
  private readonly disconnectedHandlers: DeviceHandler[] = [];
  private readonly readyHandlers: DeviceHandler[] = [];
  /** Clients whose subscription to their own `cmd/` topic is in place (in this connection). */
  private readonly ready = new WeakSet<Client>();
  private boundPorts: { mqtt?: number; mqtts?: number } = {};
  private metrics: BrokerMetrics | undefined;
  /** Connect timeout and caps on unauthenticated connections, every listener (issue 11). */
  private guard: ConnectionGuard | undefined;
  /** The packet size and MQTT rules every connection is held to; one object for all (issue 12). */
  private inboundLimit: InboundLimit | undefined;
  private stopping: Promise<void> | undefined;
  private closing = false;

  constructor(private readonly deps: BrokerDeps) {}

  async start(): Promise<void> {
    const { config, log } = this.deps;
    // Read the TLS files first: a bad file must stop the start before anything listens.
    const tlsOptions = tlsConfigured(config.tls) ? await loadTlsOptions(config.tls) : undefined;
    this.metrics ??= createBrokerMetrics(this.deps.metrics, () => this.clients.size);
    this.guard ??= new ConnectionGuard({ limits: config, metrics: this.deps.metrics, log });
    this.inboundLimit ??= {
      maxPacketBytes: config.maxPacketBytes,
      rules: true,
      onViolation: (socket, violation) => this.packetViolation(socket, violation),
    };

    const aedes = await Aedes.createBroker({
      drainTimeout: config.drainTimeoutMs,
      // Only a backstop: the guard cuts (and counts, connect_timeout) at connectTimeoutMs from accept. With
      // the same figure, aedes' timer, started when the guard hands the socket over at once, could fire first
      // in the same tick and close it uncounted (issue 12: a flake of the guard's own timeout test under load).
      connectTimeout: config.connectTimeoutMs + 1000,
      preConnect: (client, packet, done) => this.preConnect(client, packet, done),
      authenticate: (client, username, password, done) => {
        this.authenticateClient(client, username, password).then(
          () => done(null, true),
          (err: AuthenticateError) => done(err, false),
        );
      },
      authorizePublish: (client, packet, done) => done(this.authorizePublish(client, packet)),
      authorizeSubscribe: (client, sub, done) => done(null, this.authorizeSubscribe(client, sub)),
    });
    this.aedes = aedes;
    aedes.on('publish', (packet, client) => this.delivered(packet, client));
    // 'client' fires when aedes registers the session, before the CONNACK is written, so a device
    // that has its CONNACK is always seen as connected ('clientReady' comes a tick after it).
    aedes.on('client', (client) => this.clientRegistered(client));
    aedes.on('clientDisconnect', (client) => this.clientGone(client));
    // 'subscribe' fires once aedes has added the subscription (after the SUBACK write was queued): from here
    // on a publish to the device's cmd/ topic reaches it (PROTOCOL.md "Delivery of daemon -> device commands").
    aedes.on('subscribe', (subs, client) => this.subscribed(subs, client));
    aedes.on('clientError', (client, err) => log.debug({ deviceId: client.id, err: err.message }, 'client error'));
    aedes.on('connectionError', (_client, err) => log.debug({ err: err.message }, 'connection error before CONNECT'));
    // aedes emits 'error' for persistence failures; without a listener it would crash the daemon.
    (aedes as EventEmitter).on('error', (err: Error) => log.error({ err }, 'broker error'));

    try {
      const plainOn = !tlsOptions || config.plainWithTls;
      if (plainOn) {
        // No connection listener here: listen() admits each socket first, then hands it over in its turn.
        // pauseOnConnect: a socket waiting for its turn is not read at all; what its peer sends stays in the
        // kernel (TCP pushes back) instead of 64 KiB per waiting socket in the daemon (issue 12). aedes'
        // 'readable' listener starts reading it when handed over.
        const server = createNetServer({ pauseOnConnect: true });
        this.boundPorts.mqtt = await this.listen(server, config.port, 'mqtt.port', 'XCARE_MQTT_PORT', (socket) => this.accept(socket));
      }
      if (tlsOptions) {
        // After the handshake, the connection waits for its turn like a plain one (ConnectionGuard.gate).
        const server = createTlsServer(tlsOptions, (socket) => this.guard?.gate(rawSocketOf(socket), () => this.accept(socket)));
        server.on('tlsClientError', (err, socket) => {
          log.debug({ err: err.message, remote: socket.remoteAddress }, 'TLS handshake failed');
          // With a listener here Node leaves the socket open (issue 11: idle mqtts sockets outlived the timeout).
          this.guard?.tlsError(socket);
        });
        this.boundPorts.mqtts = await this.listen(server, config.tls.port, 'mqtt.tls.port', 'XCARE_MQTTS_PORT');
      }
    } catch (err) {
      await this.stop();
      throw err;
    }
    log.info({ ...this.boundPorts, host: config.host, maxPacketBytes: config.maxPacketBytes }, 'MQTT broker listening');
  }

  /** Stops accepting, closes every client and aedes. Runs once however often it is called. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.closing = true;
      this.guard?.stop();
      const closed = this.servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve())));
      const aedes = this.aedes;
      if (aedes) await new Promise<void>((resolve) => aedes.close(() => resolve()));
      // Sockets aedes did not close: TLS handshakes in progress, connections accepted during stop.
      this.guard?.destroyAll();
      await Promise.all(closed);
      this.deps.log.info('MQTT broker stopped');
    })();
    return this.stopping;
  }

  ports(): { mqtt?: number; mqtts?: number } {
    return { ...this.boundPorts };
  }

  onDeviceMessage(handler: DeviceMessageHandler): void {
    this.messageHandlers.push(handler);
  }

  onClientConnected(handler: DeviceHandler): void {
    this.connectedHandlers.push(handler);
  }

  onClientDisconnected(handler: DeviceHandler): void {
    this.disconnectedHandlers.push(handler);
  }

  /**
   * QoS 1 to `fleet/v1/<id>/cmd/patch`. Resolves once the broker has routed it; a device that is
   * offline does not get it queued (PROTOCOL.md: agents reconcile on reconnect).
   */
  publishToDevice(deviceId: string, payload: Buffer | string): Promise<void> {
    const aedes = this.aedes;
    if (!aedes || this.closing) return Promise.reject(new Error('broker is not running'));
    const packet: PublishPacket = {
      cmd: 'publish',
      topic: topics.cmdPatch(deviceId),
      payload: typeof payload === 'string' ? Buffer.from(payload) : payload,
      qos: 1,
      retain: false,
      dup: false,
    };
    return new Promise((resolve, reject) => aedes.publish(packet, (err) => (err ? reject(err) : resolve())));
  }

  /** Closes a live connection (revocation); the device's next CONNECT is refused by authenticate(). */
  disconnectDevice(deviceId: string): void {
    const client = this.clients.get(deviceId);
    if (!client) return;
    this.deps.log.info({ deviceId }, 'closing device connection');
    client.close();
  }

  isConnected(deviceId: string): boolean {
    return this.clients.has(deviceId);
  }

  /**
   * Called when a device can receive commands: its SUBSCRIBE to its own `cmd/` topic is in place in the
   * current connection (issue 9 fault 1: a command published at CONNECT, before the clean-session SUBSCRIBE,
   * is dropped by the broker). Fires on every (re)connect.
   */
  onDeviceReady(handler: DeviceHandler): void {
    this.readyHandlers.push(handler);
  }

  /** Is the device connected and subscribed to its commands, so that a command published now reaches it? */
  isReady(deviceId: string): boolean {
    const client = this.clients.get(deviceId);
    return client !== undefined && this.ready.has(client);
  }

  connectedCount(): number {
    return this.clients.size;
  }

  /** Binds `server`; a failure names the config key and environment variable of the port (`key`, `envVar`). */
  private listen(server: NetServer | TlsServer, port: number, key: string, envVar: string, plain?: (socket: Socket) => void): Promise<number> {
    this.servers.push(server);
    // The guard tracks raw TCP sockets from the moment they are accepted: a TLS socket mid-handshake
    // never reaches aedes, and server.close() would otherwise wait for it (handshake timeout 120 s).
    server.on('connection', (socket: Socket) => {
      if (!this.guard?.admit(socket)) return;
      // Plain TCP: ready for its CONNECT at once, handed to aedes in its turn (issue 12: wait, don't refuse).
      if (plain) this.guard.gate(socket, () => plain(socket));
    });
    return new Promise((resolve, reject) => {
      const failed = (err: NodeJS.ErrnoException) => reject(listenError(err, key, envVar, this.deps.config.host, port));
      server.once('error', failed);
      server.listen(port, this.deps.config.host, () => {
        server.off('error', failed);
        server.on('error', (err) => this.deps.log.error({ err }, 'MQTT listener error'));
        resolve((server.address() as AddressInfo).port);
      });
    });
  }

  private accept(socket: Socket): void {
    if (this.closing || !this.aedes) {
      socket.destroy();
      return;
    }
    // Issue 12: a source flooding bad passwords is refused here, before aedes builds a client for it.
    if (this.deps.admitSource && !this.deps.admitSource(socket.remoteAddress)) {
      this.metrics?.authThrottled.inc();
      socket.destroy();
      return;
    }
    // PUBACKs are small and latency matters more than packing them (p99 target of issue 2).
    socket.setNoDelay(true);
    // aedes reads and writes the socket itself; the limit is checked on it before aedes reads a byte.
    limitInbound(socket, this.inboundLimit!);
    this.aedes.handle(socket);
  }

  private packetViolation(socket: Socket, violation: Violation): void {
    // aedes.handle() hangs its Client on the socket; absent when cut before CONNECT was parsed.
    const client = (socket as Socket & { client?: Client }).client;
    if (violation.reason === 'oversize') {
      this.metrics?.oversizePackets.inc();
      this.deps.log.warn(
        { remote: socket.remoteAddress, declaredBytes: violation.declaredBytes, maxPacketBytes: this.deps.config.maxPacketBytes, deviceId: client?.id },
        'packet above mqtt.maxPacketBytes, connection closed',
      );
    } else if (violation.reason === 'protocol') {
      this.guard?.protocolViolation(violation.rule);
      this.deps.log.warn({ remote: socket.remoteAddress, rule: violation.rule, deviceId: client?.id }, 'MQTT protocol violation, connection closed');
    } else {
      this.guard?.protocolViolation('MQTT-2.2.3');
      this.deps.log.warn({ remote: socket.remoteAddress }, 'malformed MQTT fixed header, connection closed');
    }
  }

  private preConnect(client: Client, packet: ConnectPacket, done: (err: Error | null, ok: boolean) => void): void {
    this.connectInfo.set(client, { protocolVersion: packet.protocolVersion ?? 0, will: packet.will });
    done(null, true);
  }

  /** Resolves when the device may connect; rejects with the CONNACK code otherwise. */
  private async authenticateClient(client: Client, username: string | undefined, password: Buffer | undefined): Promise<void> {
    const info = this.connectInfo.get(client);
    // Past CONNECT only the Will is looked up again (delivered(), at shutdown); most devices send none,
    // and their entry need not live as long as the connection (issue 12: memory per device).
    if (!info?.will) this.connectInfo.delete(client);
    const remote = remoteOf(client);
    const identity = checkConnectIdentity({
      clientId: client.id,
      username,
      password,
      protocolVersion: info?.protocolVersion ?? 0,
    });
    if (!identity.ok) {
      // The username is untrusted: it is named in logs and events only when it is a valid device id.
      this.authFailure(identity.reason, isDeviceId(username) ? username : undefined, remote);
      throw refusal(NOT_AUTHORIZED);
    }
    const { deviceId, token } = identity;
    let verdict: boolean | 'ok' | 'refused' | 'throttled' | 'retired';
    try {
      verdict = await this.deps.authenticate(deviceId, token, remote);
    } catch (err) {
      this.deps.log.error({ err, deviceId }, 'device authentication failed with an error');
      throw refusal(SERVER_UNAVAILABLE);
    }
    if (verdict === 'throttled') {
      // A flood from one source: counted and fed to the security signal, but no log line each
      // (the registry logged once when the source was throttled), so it stays cheap (issue 12).
      this.metrics?.authFailures.inc();
      this.metrics?.authThrottled.inc();
      this.deps.onSecurityEvent?.({ kind: 'auth_failure', ...(remote ? { remote } : {}) });
      throw refusal(NOT_AUTHORIZED);
    }
    if (verdict === 'retired') {
      // The agent retrying with the token an operator just rotated away or revoked: refused, but expected.
      this.metrics?.retiredTokens.inc();
      this.deps.log.debug({ deviceId, remote }, 'CONNECT refused: a token retired by rotation or revocation');
      throw refusal(NOT_AUTHORIZED);
    }
    if (verdict !== true && verdict !== 'ok') {
      this.authFailure('unknown_revoked_or_wrong_token', deviceId, remote);
      throw refusal(NOT_AUTHORIZED);
    }
    // Checked after the token so a will violation is only ever blamed on the real device.
    if (info?.will) {
      const will = authorizeWill(deviceId, info.will.topic);
      if (!will.allow) {
        this.aclViolation(deviceId, info.will.topic, `will_${will.reason}`, remote);
        throw refusal(NOT_AUTHORIZED);
      }
    }
  }

  private authFailure(reason: string, deviceId: string | undefined, remote: string | undefined): void {
    this.metrics?.authFailures.inc();
    this.deps.log.info({ deviceId, remote, reason }, 'CONNECT refused');
    this.deps.onSecurityEvent?.({ kind: 'auth_failure', ...(deviceId ? { deviceId } : {}), ...(remote ? { remote } : {}) });
  }

  private aclViolation(deviceId: string, topic: string, reason: string, remote: string | undefined): void {
    this.metrics?.aclDenied.inc();
    this.deps.log.warn({ deviceId, topic, remote, reason }, 'ACL violation');
    this.deps.onSecurityEvent?.({ kind: 'acl_violation', deviceId, topic, ...(remote ? { remote } : {}) });
  }

  /** An error makes aedes drop the packet and close the connection (PROTOCOL.md: "the connection is closed"). */
  private authorizePublish(client: Client | null, packet: PublishPacket): Error | null {
    // client is null only for wills aedes republishes for a dead cluster peer; same rule as at CONNECT.
    const deviceId = client ? client.id : (packet as { clientId?: string }).clientId;
    if (!client) return deviceId && authorizeWill(deviceId, packet.topic).allow ? null : new Error('not authorized');
    const decision = authorizePublish(client.id, packet.topic);
    if (decision.allow) return null;
    this.aclViolation(client.id, packet.topic, `publish_${decision.reason}`, remoteOf(client));
    return new Error('not authorized');
  }

  /** null makes aedes answer SUBACK 0x80 for that filter and keep the connection. */
  private authorizeSubscribe(client: Client, sub: Subscription): Subscription | null {
    const decision = authorizeSubscribe(client.id, sub.topic);
    if (decision.allow) return sub;
    this.aclViolation(client.id, sub.topic, `subscribe_${decision.reason}`, remoteOf(client));
    return null;
  }

  /** The in-process hot path: every publish that passed the ACL, including Last Wills. */
  private delivered(packet: AedesPublishPacket, client: Client | null): void {
    // Broker-internal publishes ($SYS, our own cmd/) have no client.
    if (!client || this.messageHandlers.length === 0) return;
    // On our own shutdown the devices did not fail, the daemon did: their Last Wills (the very
    // object CONNECT carried, which aedes publishes on close) are not reported as device state.
    if (this.closing && packet === (this.connectInfo.get(client)?.will as unknown)) return;
    const kind = deviceTopicKind(client.id, packet.topic);
    if (!kind) return;
    const payload = packet.payload as Buffer;
    for (const handler of this.messageHandlers) {
      try {
        handler(client.id, kind, payload);
      } catch (err) {
        this.deps.log.error({ err, deviceId: client.id, kind }, 'device message handler failed');
      }
    }
  }

  private clientRegistered(client: Client): void {
    this.guard?.authenticated(client.conn as Socket);
    this.clients.set(client.id, client);
    this.deps.log.debug({ deviceId: client.id, remote: remoteOf(client) }, 'device connected');
    for (const handler of this.connectedHandlers) this.safely(handler, client.id);
  }

  private subscribed(subs: Subscription[], client: Client | null): void {
    if (!client || this.clients.get(client.id) !== client || this.ready.has(client)) return;
    const own = topics.cmdPatch(client.id);
    const covers = subs.some((s) => (s.qos as number) !== 128 && (s.topic === own || s.topic === topics.cmdFilter(client.id)));
    if (!covers) return;
    this.ready.add(client);
    this.deps.log.debug({ deviceId: client.id }, 'device ready for commands');
    for (const handler of this.readyHandlers) this.safely(handler, client.id);
  }

  private clientGone(client: Client): void {
    // After a takeover the map already holds the new client for this id; only its own entry goes.
    if (this.clients.get(client.id) !== client) return;
    this.clients.delete(client.id);
    this.deps.log.debug({ deviceId: client.id }, 'device disconnected');
    for (const handler of this.disconnectedHandlers) this.safely(handler, client.id);
  }

  private safely(handler: DeviceHandler, deviceId: string): void {
    try {
      handler(deviceId);
    } catch (err) {
      this.deps.log.error({ err, deviceId }, 'connection handler failed');
    }
  }
}
