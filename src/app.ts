import { join, resolve } from 'node:path';
import type { Registry } from 'prom-client';
import type { Config } from './config/schema.js';
import type { Clock } from './clock.js';
import type { Logger } from './log.js';
import { openDatabase, type Database } from './db/database.js';
import { createMetricsRegistry, createIngestMetrics } from './metrics/metrics.js';
import { DeviceRegistry } from './registry/device-registry.js';
import type { DeviceRecord } from './registry/types.js';
import { DeviceStateWriter } from './ingest/device-state-writer.js';
import { DeviceMessageIngest } from './ingest/device-message-ingest.js';
import type { IngestListener } from './ingest/ingest-listener.js';
import { FleetBroker } from '../broker/fleet-broker.js';
import { Router } from './http/router.js';
import { HttpServer } from './http/server.js';
import { registerSystemRoutes } from './http/routes/system.js';
import { registerDeviceRoutes, type DeviceView } from './http/routes/devices.js';
import { resolveAdminToken } from './admin-token.js';
import { fiscalYearEnd } from './subscriptions/fiscal-year.js';
import { registerDeviceMetrics } from './metrics/device-metrics.js';

export interface AppDeps {
  clock: Clock;
  log: Logger;
  metrics?: Registry;
}

interface Component {
  name: string;
  start(): void | Promise<void>;
  stop(): void | Promise<void>;
}

/**
 * Wires the daemon: store, registry, broker, ingest, evaluator, tickets, helpdesk, patches,
 * scheduler and HTTP. Components start in order and stop in reverse, each stop guarded and logged.
 * Tests build it with their own clock and config (ports 0, temp data dir).
 */
export class App {
  readonly db: Database;
  readonly metrics: Registry;
  readonly registry: DeviceRegistry;
  readonly broker: FleetBroker;
  readonly http: HttpServer;
  readonly writer: DeviceStateWriter;
  readonly ingest: DeviceMessageIngest;
  readonly adminToken: string;
  private readonly components: Component[] = [];
  private started: Component[] = [];
  private stopping?: Promise<void>;

  constructor(
    readonly config: Readonly<Config>,
    readonly deps: AppDeps,
  ) {
    const { clock, log } = deps;
    const dataDir = resolve(config.dataDir);
    this.metrics = deps.metrics ?? createMetricsRegistry();
    this.adminToken = resolveAdminToken(config.adminToken, dataDir, log);
    this.db = openDatabase(join(dataDir, 'xcare.db'));

    this.registry = new DeviceRegistry({
      db: this.db,
      clock,
      log: log.child({ module: 'registry' }),
      fiscalYearEnd,
      authCacheSize: config.mqtt.authCacheSize,
    });

    const ingestMetrics = createIngestMetrics(this.metrics);
    this.writer = new DeviceStateWriter({
      db: this.db,
      clock,
      log: log.child({ module: 'ingest' }),
      flushIntervalMs: config.ingest.flushIntervalMs,
      maxBatch: config.ingest.maxBatch,
    });
    const listeners: IngestListener[] = [];
    this.ingest = new DeviceMessageIngest({
      clock,
      log: log.child({ module: 'ingest' }),
      directory: this.registry,
      writer: this.writer,
      maxHeartbeatBytes: config.ingest.maxHeartbeatBytes,
      heartbeats: ingestMetrics.heartbeats,
      rejected: ingestMetrics.rejected,
      listeners,
    });

    this.broker = new FleetBroker({
      config: config.mqtt,
      log: log.child({ module: 'broker' }),
      metrics: this.metrics,
      authenticate: (id, token) => this.registry.authenticate(id, token),
    });
    this.broker.onDeviceMessage((id, kind, payload) => this.ingest.handle(id, kind, payload));
    this.broker.onClientConnected((id) => this.ingest.connected(id, true));
    this.broker.onClientDisconnected((id) => this.ingest.connected(id, false));

    registerDeviceMetrics(this.metrics, this.db);

    const router = new Router();
    registerSystemRoutes(router, {
      metrics: this.metrics,
      readiness: () => Object.fromEntries(this.components.map((c) => [c.name, this.started.includes(c)])),
    });
    registerDeviceRoutes(router, {
      registry: this.registry,
      view: (d) => this.deviceView(d),
      detail: (d) => this.deviceDetail(d),
      onRevoked: (id) => this.broker.disconnectDevice(id),
    });
    this.http = new HttpServer({
      router,
      log: log.child({ module: 'http' }),
      host: config.http.host,
      port: config.http.port,
      adminToken: this.adminToken,
    });

    this.components.push(
      { name: 'store', start: () => {}, stop: () => void this.db.close() },
      { name: 'registry', start: () => this.registry.start(), stop: () => this.registry.stop() },
      { name: 'ingest', start: () => this.writer.start(), stop: () => this.writer.stop() },
      { name: 'broker', start: () => this.broker.start(), stop: () => this.broker.stop() },
      { name: 'http', start: () => this.http.start(), stop: () => this.http.stop() },
    );
  }

  async start(): Promise<void> {
    for (const c of this.components) {
      await c.start();
      this.started.push(c);
    }
    const ports = this.broker.ports();
    this.deps.log.info({ mqtt: ports.mqtt, mqtts: ports.mqtts, http: this.http.port() }, 'xcared started');
  }

  /** Stop in reverse order; runs once however often it is called (SIGTERM twice, tests). */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      for (const c of [...this.started].reverse()) {
        try {
          await c.stop();
          this.deps.log.info({ component: c.name }, 'stopped');
        } catch (err) {
          this.deps.log.error({ err, component: c.name }, 'stop failed');
        }
      }
      this.started = [];
    })();
    return this.stopping;
  }

  private liveRow(id: string): LiveRow | undefined {
    return this.db.prepare('SELECT * FROM device_state WHERE device_id = ?').get(id) as LiveRow | undefined;
  }

  /** Until the evaluator has judged a device: online while heartbeats arrive within the allowed silence. */
  private livenessOf(id: string, row: LiveRow | undefined): string {
    if (!row?.last_seen) return 'unknown';
    const allowedMs = this.config.health.missedHeartbeats * (row.interval_s ?? 30) * 1000;
    return this.deps.clock.now() - row.last_seen < allowedMs ? 'online' : 'offline';
  }

  private deviceView(device: DeviceRecord): DeviceView {
    const row = this.liveRow(device.id);
    return {
      ...device,
      state: device.revokedAt !== null ? 'revoked' : this.livenessOf(device.id, row),
      lastSeen: row?.last_seen ? new Date(row.last_seen).toISOString() : null,
      softwareVersion: row?.software_version ?? null,
      agentVersion: row?.agent_version ?? null,
    };
  }

  private deviceDetail(device: DeviceRecord): Record<string, unknown> {
    const row = this.liveRow(device.id);
    return {
      ...this.deviceView(device),
      connected: this.broker.isConnected(device.id),
      integrity: row?.integrity ?? null,
      heartbeats: row?.heartbeats ?? 0,
      lastHeartbeat: row?.heartbeat ? JSON.parse(row.heartbeat) : null,
    };
  }
}

interface LiveRow {
  last_seen: number | null;
  interval_s: number | null;
  online: number;
  connected: number;
  software_version: string | null;
  agent_version: string | null;
  integrity: string | null;
  heartbeat: string | null;
  heartbeats: number;
}
