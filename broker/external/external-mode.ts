import { hostname } from 'node:os';
import type { Registry } from 'prom-client';
import type { Config } from '../../src/config/schema.js';
import type { Logger } from '../../src/log.js';
import { XcareError } from '../../src/errors.js';
import type { DeviceRecord } from '../../src/registry/types.js';
import { DynsecClient } from './dynsec.js';
import { DynsecDeviceSync, type ReconcileReport } from './dynsec-device-sync.js';
import { ExternalBroker } from './external-broker.js';
import type { SecurityEvent } from '../fleet-broker.js';
import { parseMosquittoLogLine } from './mosquitto-log.js';

/** This daemon's name in a cluster: `cluster.instanceId`, else `<hostname>-<pid>`. */
export function instanceIdOf(config: Config): string {
  return config.cluster.instanceId ?? `${hostname()}-${process.pid}`;
}

export interface ExternalModeDeps {
  config: Config;
  log: Logger;
  metrics: Registry;
  /** The whole registry (revoked devices included), read at each reconcile. */
  devices(): Iterable<DeviceRecord>;
  /** Refused CONNECTs read from Mosquitto's log (dynsec mode), for the evaluator's security signals. */
  onSecurityEvent?(e: SecurityEvent): void;
}

/**
 * External broker mode, wired: the broker client and, with `mqtt.broker.credentials: dynsec`, the
 * Mosquitto credential sync (reconcile at start and after every reconnect; credentials deleted at
 * revocation, which also disconnects the device). With `credentials: http` the broker asks
 * `POST /mqtt/auth` instead and nothing is pushed to it.
 */
export class ExternalMode {
  readonly broker: ExternalBroker;
  private sync: DynsecDeviceSync | undefined;
  private dynsec: DynsecClient | undefined;
  /** The last reconcile's findings (tests, logs). */
  lastReconcile: ReconcileReport | undefined;

  constructor(private readonly deps: ExternalModeDeps) {
    const { config, log, metrics } = deps;
    const dynsecMode = config.mqtt.broker.credentials === 'dynsec';
    this.broker = new ExternalBroker({
      config: config.mqtt.broker,
      instanceId: instanceIdOf(config),
      log,
      metrics,
      ...(dynsecMode
        ? {
            onBrokerConnected: async () => {
              await this.reconcile();
              // A single daemon is its own evaluator; a cluster's leader opens the feed once elected.
              if (!config.cluster.enabled) await this.openSecurityFeed();
            },
            disconnect: (id: string) => this.credentials().revoke(id),
          }
        : {}),
    });
    if (dynsecMode) this.broker.onBrokerLog((line) => this.brokerLogLine(line));
  }

  /**
   * Dynsec mode: Mosquitto reports refused CONNECTs only in its log; read them from `$SYS/broker/log/N` and
   * count them like the embedded broker and the EMQX hook do (`fleet_mqtt_auth_failures_total`, the
   * evaluator's `auth_failure` signal). Call on the instance whose evaluator runs, and only there, so that
   * each line is counted once across a cluster. No-op with `credentials: http` (the hook reports).
   */
  async openSecurityFeed(): Promise<void> {
    if (this.deps.config.mqtt.broker.credentials !== 'dynsec') return;
    await this.broker.setBrokerLogFeed(true);
  }

  private brokerLogLine(line: Buffer): void {
    const signal = parseMosquittoLogLine(line);
    if (!signal) return;
    this.broker.countAuthFailure();
    this.deps.log.info({ deviceId: signal.deviceId, reason: 'broker_refused' }, 'CONNECT refused (reported by the broker log)');
    this.deps.onSecurityEvent?.({ kind: 'auth_failure', ...(signal.deviceId ? { deviceId: signal.deviceId } : {}) });
  }

  /**
   * For the registry's `beforeIssue`: new tokens go to the broker before the devices are committed.
   * Absent (undefined) when the broker authenticates through the HTTP hook.
   */
  get beforeIssue(): ((issued: { id: string; token: string }[]) => Promise<void>) | undefined {
    if (this.deps.config.mqtt.broker.credentials !== 'dynsec') return undefined;
    return (issued) => this.credentials().provision(issued);
  }

  /**
   * Token rotation, committed in the registry: the broker password follows and the connection made with the
   * old token is closed. A failure is logged; the device then needs another rotation once the broker is back.
   */
  rotated(id: string, token: string): void {
    if (this.deps.config.mqtt.broker.credentials !== 'dynsec') return;
    Promise.resolve()
      .then(() => this.credentials().setToken(id, token))
      .catch((err: unknown) => this.deps.log.error({ err, deviceId: id }, 'broker password not rotated; rotate the token again once the broker is reachable'));
  }

  async reconcile(): Promise<ReconcileReport> {
    this.lastReconcile = await this.credentials().reconcile(this.deps.devices());
    return this.lastReconcile;
  }

  private credentials(): DynsecDeviceSync {
    const client = this.broker.mqttClient();
    // Fail fast: mqtt.js would queue the command until the broker is back, far past any API client's patience.
    if (!client || !this.broker.healthy()) throw new XcareError('BROKER_UNAVAILABLE', 'the external MQTT broker is not connected: device credentials cannot be changed now', 503);
    if (!this.sync) {
      this.dynsec = new DynsecClient({ client, log: this.deps.log, timeoutMs: this.deps.config.mqtt.broker.timeoutMs });
      this.sync = new DynsecDeviceSync({ dynsec: this.dynsec, log: this.deps.log });
    }
    return this.sync;
  }

  stop(): void {
    this.dynsec?.stop();
  }
}
