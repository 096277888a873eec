/**
 * The agent's MQTT link (PROTOCOL.md "MQTT 3.1.1"): credentials, Last Will, the retained `state`
 * message, the `cmd/#` subscription, and reconnects.
 *
 * Reconnects are ours, not mqtt.js's (`reconnectPeriod: 0`): mqtt.js retries at a fixed period,
 * and a fleet that lost its broker would come back in lock-step. Here each failed attempt waits
 * `backoffDelay(attempt)` (exponential, full jitter), reset after a successful connect; each attempt
 * uses a fresh client, so no half-dead state carries over. Nothing is queued while offline: the
 * heartbeat is periodic and the patch port re-publishes its latest status on connect
 * (PROTOCOL.md: "agents reconcile on every reconnect rather than relying on queued broker messages").
 */
import type { MqttClient } from 'mqtt';
import { topics } from '../src/protocol/topics.js';
import type { StateMessage } from '../src/protocol/types.js';
import { backoffDelay } from '../src/protocol/backoff.js';
import type { AgentLogger } from './log.js';
import { connectMqtt, type MqttConnectOptions } from './mqtt-client.js';


export interface AgentConnectionDeps {
  deviceId: string;
  /** The device token, asked for before every attempt (a token file may have been re-provisioned). */
  token: () => string;
  brokerUrl: string;
  /** PEM CA bundle for mqtts:// (else the system's roots). */
  ca?: Buffer;
  reconnect: { minMs: number; maxMs: number };
  log: AgentLogger;
  /** Called after every successful connect, once `state` is published and `cmd/#` subscribed. */
  onConnect(): void;
  /** Called when an established connection is lost (not for failed attempts). */
  onDisconnect(): void;
  onMessage(topic: string, payload: Buffer): void;
  keepaliveS?: number;
  connectTimeoutMs?: number;
  random?: () => number;
}

/** MQTT 3.1.1 CONNACK return codes that mean "your credentials were refused". */
const CONNACK_BAD_CREDENTIALS = 4;
const CONNACK_NOT_AUTHORIZED = 5;
const STOP_PUBLISH_TIMEOUT_MS = 2000;
/** After a refusal, how often the token source is re-read for a rotated token. */
const TOKEN_POLL_MS = 2000;

export class AgentConnection {
  private client: MqttClient | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private attempt = 0;
  private stopped = true;
  private isConnected = false;
  /** The token the latest attempt presented (compared after a refusal to spot a rotated one). */
  private presentedToken = '';

  constructor(private readonly deps: AgentConnectionDeps) {}

  get connected(): boolean {
    return this.isConnected;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.open();
  }

  /** Publish a message now; returns false (and drops it) when not connected. */
  publish(topic: string, payload: string, options: { qos: 0 | 1; retain?: boolean }): boolean {
    const client = this.client;
    if (!client || !this.isConnected) return false;
    client.publish(topic, payload, { qos: options.qos, retain: options.retain ?? false }, (err) => {
      if (err) this.deps.log.warn('publish failed', { topic, err });
    });
    return true;
  }

  /**
   * Leave cleanly: publish the retained `{"online":false}` ourselves (a clean DISCONNECT discards the
   * Last Will [MQTT-3.1.2-10]), wait for its PUBACK (bounded), then DISCONNECT.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const client = this.client;
    this.client = undefined;
    if (!client) return;
    if (this.isConnected) {
      this.isConnected = false;
      const offline: StateMessage = { online: false };
      await withTimeout(
        client.publishAsync(topics.state(this.deps.deviceId), JSON.stringify(offline), { qos: 1, retain: true }),
        STOP_PUBLISH_TIMEOUT_MS,
      ).catch((err: unknown) => this.deps.log.warn('could not publish offline state', { err }));
      await withTimeout(client.endAsync(false), STOP_PUBLISH_TIMEOUT_MS).catch(() => client.end(true));
    } else {
      client.end(true);
    }
  }

  private open(): void {
    const { deviceId, token, log } = this.deps;
    const will: StateMessage = { online: false };
    const options: MqttConnectOptions = {
      protocolVersion: 4, // PROTOCOL.md: aedes 1.x speaks 3.1.1 and refuses MQTT 5 CONNECTs
      clientId: deviceId,
      username: deviceId,
      password: (this.presentedToken = token()),
      clean: true,
      keepalive: this.deps.keepaliveS ?? 30,
      connectTimeout: this.deps.connectTimeoutMs ?? 15_000,
      reconnectPeriod: 0,
      // mqtt-packet otherwise pre-builds a Buffer for each of the 65,536 packet ids on the first write:
      // 6 MB of heap (65k objects) that an agent sending one heartbeat every intervalS never needs.
      writeCache: false,
      will: { topic: topics.state(deviceId), payload: Buffer.from(JSON.stringify(will)), qos: 1, retain: true },
      ...(this.deps.ca ? { ca: this.deps.ca } : {}),
    };
    log.debug('connecting', { brokerUrl: this.deps.brokerUrl, attempt: this.attempt });
    let client: MqttClient;
    try {
      client = connectMqtt(this.deps.brokerUrl, options);
    } catch (err) {
      log.error('cannot create MQTT client', { err });
      this.scheduleReconnect(false);
      return;
    }
    this.client = client;
    let refused = false;
    let established = false;
    let closed = false;

    client.on('connect', () => {
      if (client !== this.client) return;
      established = true;
      this.isConnected = true;
      this.attempt = 0;
      log.info('connected', { brokerUrl: this.deps.brokerUrl });
      const online: StateMessage = { online: true };
      // PROTOCOL.md "Delivery of daemon -> device commands": `{"online":true}` goes out only after the SUBACK
      // of cmd/#, so a daemon behind an external broker (which cannot see SUBSCRIBEs) may take a live
      // (non-retained) online state as "this device can receive commands now".
      client.subscribe(topics.cmdFilter(deviceId), { qos: 1 }, (err, granted) => {
        if (err) log.warn('subscribe failed', { err });
        else if (granted?.some((g) => g.qos === 128)) log.error('broker refused the cmd subscription', { topic: topics.cmdFilter(deviceId) });
        if (client !== this.client) return;
        client.publish(topics.state(deviceId), JSON.stringify(online), { qos: 1, retain: true }, (perr) => {
          if (perr) log.warn('could not publish online state', { err: perr });
        });
      });
      this.deps.onConnect();
    });
    client.on('message', (topic, payload) => {
      if (client !== this.client) return;
      this.deps.onMessage(topic, payload);
    });
    client.on('error', (err: Error & { code?: unknown }) => {
      if (err.code === CONNACK_NOT_AUTHORIZED || err.code === CONNACK_BAD_CREDENTIALS) {
        refused = true;
        log.error('broker refused the device credentials (CONNACK not authorized): check deviceId and token; retrying', {
          code: err.code,
          retryInMs: this.deps.reconnect.maxMs,
        });
      } else {
        log.warn('connection error', { err });
      }
    });
    client.on('close', () => {
      if (closed || client !== this.client) return;
      closed = true;
      const wasConnected = established && this.isConnected;
      this.isConnected = false;
      client.removeAllListeners('message');
      client.end(true);
      if (wasConnected) {
        log.warn('connection lost');
        this.deps.onDisconnect();
      }
      if (!this.stopped) this.scheduleReconnect(refused);
    });
  }

  private scheduleReconnect(refused: boolean): void {
    const { minMs, maxMs } = this.deps.reconnect;
    // A refused token may be re-provisioned, so keep trying, but at the slowest pace: hammering the
    // broker with bad credentials also trips its failed-CONNECT security signal (RULES.md).
    const delay = refused ? maxMs : backoffDelay(this.attempt, { baseMs: minMs, maxMs, jitter: 'full' }, this.deps.random);
    this.attempt++;
    this.deps.log.info('reconnecting', { inMs: delay, attempt: this.attempt });
    if (refused) return this.awaitNewToken(Date.now() + delay);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (!this.stopped) this.open();
    }, delay);
  }

  /**
   * After a refusal: retry at `deadline`, or as soon as the token source yields a different token
   * (`xcarectl device rotate-token` written to the tokenFile), whichever comes first.
   */
  private awaitNewToken(deadline: number): void {
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.stopped) return;
      if (Date.now() >= deadline) return this.open();
      if (this.deps.token() !== this.presentedToken) {
        this.deps.log.info('device token changed; reconnecting with it');
        return this.open();
      }
      this.awaitNewToken(deadline);
    }, Math.max(0, Math.min(TOKEN_POLL_MS, deadline - Date.now())));
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    promise.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}
