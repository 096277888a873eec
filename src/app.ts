import { join, resolve } from 'node:path';
import type { Registry } from 'prom-client';
import type { Config } from './config/schema.js';
import type { Clock } from './clock.js';
import type { Logger } from './log.js';
import { openDatabase, StoreHealth, StoreMonitor, type Database } from './db/database.js';
import { PgSyncDatabase } from './db/pg/pg-sync.js';
import { pgPool, type PgPool } from './db/pg/pg-database.js';
import type { StoreEngine } from './db/store-engine.js';
import { PgLeaseStore } from './cluster/lease-store.js';
import { SoleInstance } from './cluster/sole-instance.js';
import { redactUrl } from '../broker/external/external-broker.js';
import { XcareError } from './errors.js';
import { createMetricsRegistry, createIngestMetrics } from './metrics/metrics.js';
import { DeviceRegistry } from './registry/device-registry.js';
import { KEY_FILE, loadTokenKey } from './registry/device-token.js';
import { checkTokenKey, requireTokenKeyFile } from './registry/token-key-check.js';
import type { DeviceRecord } from './registry/types.js';
import { DeviceStateWriter } from './ingest/device-state-writer.js';
import { DeviceMessageIngest } from './ingest/device-message-ingest.js';
import type { IngestListener } from './ingest/ingest-listener.js';
import { FleetBroker } from '../broker/fleet-broker.js';
import type { DeviceTransport } from '../broker/device-transport.js';
import { ExternalMode, instanceIdOf } from '../broker/external/external-mode.js';
import { createLivenessIngest } from './ingest/liveness-ingest.js';
import { registerMqttHookRoutes } from './http/routes/mqtt-auth.js';
import { Cluster } from './cluster/cluster.js';
import { leaderGuarded } from './cluster/leader-guard.js';
import { StoredLiveness } from './cluster/stored-liveness.js';
import { Router } from './http/router.js';
import { HttpServer } from './http/server.js';
import { httpTlsLoader, registerTlsExpiryMetric } from './http/tls.js';
import { registerSystemRoutes } from './http/routes/system.js';
import { registerDeviceRoutes, type DeviceView } from './http/routes/devices.js';
import { resolveAdminToken } from './admin-token.js';
import { fiscalYearEnd } from './subscriptions/fiscal-year.js';
import { registerDeviceMetrics } from './metrics/device-metrics.js';
import { IntegrityRegistry } from './subscriptions/integrity-registry.js';
import { SubscriptionService } from './subscriptions/subscription-service.js';
import { Outbox } from './helpdesk/outbox.js';
import { WebhookDelivery } from './helpdesk/webhook-delivery.js';
import { TicketService } from './tickets/ticket-service.js';
import { registerTicketMetrics } from './metrics/ticket-metrics.js';
import { registerTicketRoutes } from './http/routes/tickets.js';
import { registerSubscriptionRoutes } from './http/routes/subscriptions.js';
import { HealthEvaluator } from './health/health-evaluator.js';
import { PatchService } from './patches/patch-service.js';
import { PatchRepository } from './patches/patch-repository.js';
import { ArtifactStore } from './patches/artifact-store.js';
import { PgArtifactBlobs } from './patches/artifact-blobs.js';
import { createPatchMetrics } from './patches/patch-metrics.js';
import { registerPatchRoutes } from './http/routes/patches.js';
import { RolloutScheduler } from './rollouts/rollout-scheduler.js';
import { registerRolloutRoutes } from './http/routes/rollouts.js';
import { registerRolloutMetrics } from './metrics/rollout-metrics.js';
import type { TokenStore } from './access/token-store.js';
import type { SessionStore } from './access/session-store.js';
import { AccessControl } from './access/access-control.js';
import type { AuditLog } from './audit/audit-log.js';
import { registerAccessRoutes } from './http/routes/access.js';
import { registerConsoleRoutes } from './console/console-routes.js';
import { deviceEvents } from './registry/device-events.js';
import { LatestSoftware } from './subscriptions/latest-software.js';
import type { CustomerStore } from './customers/customer-store.js';
import { ownerStores } from './db/store-engine.js';
import { registerCustomerRoutes } from './http/routes/customers.js';

export interface AppDeps {
  clock: Clock;
  log: Logger;
  metrics?: Registry;
  /**
   * Cluster mode: this instance lost the leader lease while running. Default: stop and exit 3, so the
   * supervisor restarts it as a follower (its leader-only work must not outlive the lease).
   */
  onLeadershipLost?(reason: string): void;
}

interface Component {
  name: string;
  start(): void | Promise<void>;
  stop(): void | Promise<void>;
  /** Still healthy after start (an external broker connection can drop); absent: started is enough. */
  ready?(): boolean;
}

/**
 * Wires the daemon: store, registry, broker, ingest, evaluator, tickets, helpdesk, patches,
 * scheduler and HTTP. Components start in order and stop in reverse, each stop guarded and logged.
 * Tests build it with their own clock and config (ports 0, temp data dir).
 */
export class App {
  readonly db: Database;
  /** PostgreSQL only: the pool of the async owners (customers, tokens, sessions, audit, the lease). */
  private readonly pool?: PgPool;
  readonly metrics: Registry;
  readonly registry: DeviceRegistry;
  readonly broker: DeviceTransport;
  /** External broker mode (mqtt.broker.url): the broker client and its credential sync. */
  readonly external: ExternalMode | undefined;
  /** Several daemons on one fleet (cluster.enabled): the leader election and the leader-only work. */
  readonly cluster: Cluster | undefined;
  readonly http: HttpServer;
  readonly writer: DeviceStateWriter;
  readonly ingest: DeviceMessageIngest;
  readonly adminToken: string;
  readonly integrity: IntegrityRegistry;
  readonly subscriptions: SubscriptionService;
  readonly outbox: Outbox;
  readonly tickets: TicketService;
  readonly webhook: WebhookDelivery;
  readonly health: HealthEvaluator;
  readonly patches: PatchService;
  readonly rollouts: RolloutScheduler;
  readonly tokens: TokenStore;
  readonly sessions: SessionStore;
  readonly audit: AuditLog;
  /** Every HTTP route with its role (the role tests walk it). */
  readonly router: Router;
  readonly storeHealth: StoreHealth;
  readonly customers: CustomerStore;
  private readonly storeMonitor: StoreMonitor;
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
    const dbFile = join(dataDir, 'xcare.db');
    // The store engine, chosen once (STYLE.md): SQLite under the data dir, or PostgreSQL (store.url, issue 13).
    // On PostgreSQL the synchronous owners run over PgSyncDatabase and the async ones over a pool of their own.
    const storeUrl = config.store.url;
    this.db = storeUrl ? openPgStore(storeUrl) : openStore(dbFile);
    this.pool = storeUrl ? pgPool(storeUrl) : undefined;
    const engine: StoreEngine = this.pool ? { kind: 'postgres', pool: this.pool } : { kind: 'sqlite', db: this.db };
    // After the store opened: a start that fails there writes nothing into the data dir.
    this.adminToken = resolveAdminToken(config.adminToken, dataDir, log);
    // Issue 8, fault 3: a store that does not take writes is visible (/readyz, metric, error log), never silent.
    this.storeHealth = new StoreHealth(() => clock.now());
    this.storeMonitor = new StoreMonitor({ db: this.db, clock, log: log.child({ module: 'store' }), health: this.storeHealth, metrics: this.metrics });
    const owners = ownerStores(
      engine,
      // Cluster: another instance's customer edit reaches this one's tickets within renewS, like the registry.
      { clock, sessionTtlS: config.console.sessionTtlS, ...(config.cluster.enabled ? { customersFollowMs: config.cluster.renewS * 1000 } : {}) },
    );
    this.customers = owners.customers;
    const latestSoftware = new LatestSoftware();
    this.external = config.mqtt.broker.url
      ? new ExternalMode({
          config,
          log: log.child({ module: 'broker' }),
          metrics: this.metrics,
          devices: () => this.registry.all(),
          onSecurityEvent: (e) => this.health.onSecurityEvent({ kind: e.kind, deviceId: e.deviceId, detail: e.topic ?? e.remote }),
        })
      : undefined;

    requireTokenKeyFile(this.db, join(dataDir, KEY_FILE));
    const tokenKey = loadTokenKey(dataDir, log);
    // Before anything else is written: an instance with another key would refuse every device (issue 13).
    checkTokenKey(this.db, tokenKey, join(dataDir, KEY_FILE));
    this.registry = new DeviceRegistry({
      db: this.db,
      clock,
      log: log.child({ module: 'registry' }),
      fiscalYearEnd,
      tokenKey,
      authFailures: config.mqtt.authFailures,
      retiredTokenGraceMs: config.mqtt.retiredTokenGraceS * 1000,
      ...(this.external?.beforeIssue ? { beforeIssue: this.external.beforeIssue } : {}),
      ...(this.external ? { afterTokenRotated: (id: string, token: string) => this.external!.rotated(id, token) } : {}),
    });

    this.integrity = new IntegrityRegistry({ db: this.db, clock });
    this.subscriptions = new SubscriptionService({
      db: this.db,
      clock,
      log: log.child({ module: 'subscriptions' }),
      config: config.subscriptions,
      directory: this.registry,
      integrity: this.integrity,
      onDeviceChanged: (id) => void this.registry.reload(id),
      latest: (id) => latestSoftware.get(id),
    });
    this.outbox = new Outbox({ db: this.db, clock });
    // Roles, sessions and the audit trail (issue 14); the actor context lets ticket events name the person.
    this.tokens = owners.tokens;
    this.sessions = owners.sessions;
    this.audit = owners.audit;
    const access = new AccessControl({ adminToken: this.adminToken, tokens: this.tokens, sessions: this.sessions });
    this.tickets = new TicketService({
      db: this.db,
      clock,
      config: config.tickets,
      log: log.child({ module: 'tickets' }),
      directory: this.registry,
      eligibilityOf: (id) => this.subscriptions.eligibilityOf(id),
      outbox: this.outbox,
      successEngineerOf: (customer) => this.customers.successEngineerOf(customer),
      storeHealth: this.storeHealth,
    });
    const webhookMetrics = registerTicketMetrics({
      registry: this.metrics,
      db: this.db,
      clock,
      expiringWithinDays: config.subscriptions.expiringWithinDays,
    });
    this.webhook = new WebhookDelivery({ db: this.db, clock, config: config.webhook, log: log.child({ module: 'helpdesk' }), metrics: webhookMetrics });
    this.outbox.onCommitted(() => this.webhook.notify());

    this.health = new HealthEvaluator({
      clock,
      db: this.db,
      log: log.child({ module: 'health' }),
      config: config.health,
      directory: this.registry,
      sink: this.tickets,
      metrics: this.metrics,
      expectedIntegrity: (version) => this.integrity.expected(version),
      installGraceUntil: (id, now) => this.patches.installGraceUntil(id, now),
      storeHealth: this.storeHealth,
    });

    this.patches = new PatchService({
      repo: new PatchRepository({ db: this.db }),
      artifacts: new ArtifactStore({ dir: join(dataDir, 'artifacts'), ...(this.pool ? { blobs: new PgArtifactBlobs(this.pool) } : {}) }),
      clock,
      log: log.child({ module: 'patches' }),
      ...createPatchMetrics(this.metrics),
      releaseKeys: config.patches.releaseKeys.map((p) => resolve(p)),
      threshold: config.patches.threshold,
      maxArtifactBytes: config.patches.maxArtifactBytes,
      registerIntegrity: (version, digest, source) => void this.integrity.register(version, digest, source),
      sendToDevice: (id, payload) => this.broker.publishToDevice(id, payload),
      canReceive: (id) => this.broker.isReady(id),
      rolloutActive: (rolloutId) => this.rollouts.isActive(rolloutId),
      installGrace: { restartGraceMs: config.health.expectedRestartGraceS * 1000, maxInstallMs: config.health.maxInstallS * 1000 },
    });

    const rolloutMetrics = registerRolloutMetrics(this.metrics, { db: this.db, clock });
    this.rollouts = new RolloutScheduler({
      db: this.db,
      clock,
      log: log.child({ module: 'rollouts' }),
      config: { ...config.rollouts, missedHeartbeats: config.health.missedHeartbeats },
      directory: this.registry,
      onOffered: (n) => rolloutMetrics.offers.inc(n),
      ports: {
        patch: (id) => {
          const p = this.patches.find(id);
          return p && { id: p.id, version: p.version, types: p.appliesTo.types, appliesTo: p.appliesTo.software, expiresAt: p.expiresAt };
        },
        recordOffers: (items, patchId, rolloutId, now) => this.patches.recordOffers(items, patchId, rolloutId, now),
        offer: async (id, patchId, rolloutId) => {
          await this.patches.send(id, patchId, rolloutId);
        },
        cancel: async (id, patchId, rolloutId) => {
          await this.patches.cancel(id, patchId, rolloutId);
        },
        offeredDevices: (patchId) => this.patches.offeredDevices(patchId),
        // Issue 9 fault 1: "connected" for offers means subscribed to its cmd/ topic in this connection.
        isConnected: (id) => this.broker.isReady(id),
        eligibility: (id) => {
          const e = this.subscriptions.eligibilityOf(id);
          return e ? { eligible: e.eligible, reasons: e.reasons } : { eligible: false, reasons: ['unknown device'] };
        },
        softwareVersion: (id) => this.subscriptions.live(id)?.softwareVersion ?? undefined,
        sink: this.tickets,
      },
    });
    // Rollout completion and abort reach the helpdesk too, through the same durable outbox. They belong to
    // no ticket: ticket id 0 keeps them in order among themselves.
    this.rollouts.onRolloutEvent((e) => {
      if (e.type !== 'rollout.completed' && e.type !== 'rollout.aborted' && e.type !== 'rollout.failed') return;
      this.db.transaction(() => this.outbox.enqueue(0, e.type, { event: e }, `${e.type}:${e.rolloutId}`))();
      this.outbox.committed();
    });

    const ingestMetrics = createIngestMetrics(this.metrics);
    this.writer = new DeviceStateWriter({
      db: this.db,
      clock,
      log: log.child({ module: 'ingest' }),
      flushIntervalMs: config.ingest.flushIntervalMs,
      maxBatch: config.ingest.maxBatch,
      refreshMs: config.ingest.refreshMs,
      worker: storeUrl ? { url: storeUrl } : { file: dbFile },
    });
    // A cluster's evaluator and scheduler hear every device through the leader's liveness feed (below), not
    // through this instance's share of the traffic. A single daemon's share is all of it.
    const leaderListeners: IngestListener[] = [this.health, this.rollouts];
    const listeners: IngestListener[] = [
      // First: eligibility judged on this heartbeat's software must see it (issue 8, fault 7).
      latestSoftware,
      ...(this.external && config.cluster.enabled ? [] : leaderListeners),
      {
        // PatchStatus messages, and the heartbeat's `patch` field that repeats the latest one (PROTOCOL.md).
        onPatchStatus: (id, status, at) => void this.patches.recordStatus(id, status, at),
        onHeartbeat: (id, hb, at) => {
          if (hb.patch) this.patches.recordStatus(id, hb.patch, at);
          // After the patch field: a heartbeat after an install's final status ends the install grace.
          this.patches.noteHeartbeat(id, at);
        },
      },
    ];
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

    this.broker = this.external?.broker ?? new FleetBroker({
      config: config.mqtt,
      log: log.child({ module: 'broker' }),
      metrics: this.metrics,
      authenticate: (id, token, source) => this.registry.verifyDeviceToken(id, token, source),
      admitSource: (remote) => this.registry.admitsSource(remote),
      onSecurityEvent: (e) => this.health.onSecurityEvent({ kind: e.kind, deviceId: e.deviceId, detail: e.topic ?? e.remote }),
    });
    this.broker.onDeviceMessage((id, kind, payload) => this.ingest.handle(id, kind, payload));
    this.broker.onClientConnected((id) => this.ingest.connected(id, true));
    // A cluster sends owed commands and lets rollouts offer from the leader only: one sender, no duplicates.
    this.broker.onDeviceReady((id) => {
      if (this.cluster?.isLeader() ?? true) this.deviceReady(id);
    });
    this.broker.onClientDisconnected((id) => this.ingest.connected(id, false));
    if (this.external && config.cluster.enabled) {
      const liveness = createLivenessIngest({ clock, log: log.child({ module: 'ingest' }), directory: this.registry, maxHeartbeatBytes: config.ingest.maxHeartbeatBytes, listeners: [latestSoftware, ...leaderListeners] });
      this.external.broker.onLivenessMessage((id, kind, payload) => liveness.handle(id, kind, payload));
    }

    // The evaluator's own view only: a follower's fleet_devices{state} stays `unknown` (dashboards read the leader).
    registerDeviceMetrics(this.metrics, () => this.registry.all(), (d) => this.stateOf(d, false));

    const router = (this.router = new Router());
    registerSystemRoutes(router, {
      metrics: this.metrics,
      readiness: () => {
        const checks = Object.fromEntries(this.components.map((c) => [c.name, this.started.includes(c) && (c.ready?.() ?? true)]));
        if (!this.storeHealth.healthy()) checks.store = false;
        return checks;
      },
      reasons: () => this.storeHealth.current().map((f) => `store ${f.reason.replace('_', ' ')} (${f.source}): ${f.message}`),
      details: () => (this.cluster ? { cluster: this.cluster.view() } : {}),
    });
    registerCustomerRoutes(router, { customers: this.customers });
    registerDeviceRoutes(router, {
      registry: this.registry,
      view: (d) => this.deviceView(d),
      detail: (d) => this.deviceDetail(d),
      onRevoked: (id) => this.broker.disconnectDevice(id),
      stateOf: (d) => this.stateOf(d),
      // External broker: the credential sync sets the new password and closes the old connection itself.
      onTokenRotated: (id) => (this.external ? undefined : this.broker.disconnectDevice(id)),
    });
    // Cluster: tickets and rollouts live in the leader's memory; followers refuse changes to them.
    // (Patches are read from the store on every request: any instance publishes and serves them.)
    const leaderOwned = leaderGuarded(router, {
      following: () => this.cluster !== undefined && !this.cluster.isLeader(),
      leader: () => this.cluster?.view().holder ?? null,
      beforeFollowerRead: (path) => {
        if (path.startsWith('/api/v1/tickets')) this.tickets.load();
      },
    });
    registerTicketRoutes(leaderOwned, { tickets: this.tickets, outbox: this.outbox });
    registerSubscriptionRoutes(router, { subscriptions: this.subscriptions, integrity: this.integrity });
    registerRolloutRoutes(leaderOwned, { scheduler: this.rollouts });
    registerPatchRoutes(router, {
      patches: this.patches,
      authenticateDevice: (id, token, source) => this.registry.authenticate(id, token, source),
      deviceExists: (id) => this.registry.get(id) !== undefined,
      eligibility: (id) => this.subscriptions.eligibilityOf(id),
    });
    registerAccessRoutes(router, { tokens: this.tokens, sessions: this.sessions, audit: this.audit });
    registerConsoleRoutes(router, {
      access,
      sessions: this.sessions,
      audit: this.audit,
      tickets: this.tickets,
      outbox: this.outbox,
      devices: {
        registry: this.registry,
        view: (d) => this.deviceView(d),
        stateOf: (d) => this.stateOf(d),
        get: (id) => this.registry.get(id),
        detail: (d) => this.deviceDetail(d),
        eligibilityOf: (id) => this.subscriptions.eligibilityOf(id),
        events: (id) => deviceEvents(this.db, id),
      },
      rollouts: this.rollouts,
      sessionTtlS: config.console.sessionTtlS,
    });
    if (this.external && config.mqtt.broker.credentials === 'http') {
      const external = this.external.broker;
      registerMqttHookRoutes(router, {
        log: log.child({ module: 'broker' }),
        authenticate: (id, token, source) => this.registry.verifyDeviceToken(id, token, source),
        // Cluster: a follower's hook signals reach the leader's evaluator through the store (SecurityRelay).
        onSecurityEvent: (e) => {
          const signal = { kind: e.kind, deviceId: e.deviceId, detail: e.topic ?? e.remote };
          if (this.cluster) this.cluster.reportSecurity(signal);
          else this.health.onSecurityEvent(signal);
        },
        countAuthFailure: () => external.countAuthFailure(),
        countAclDenied: () => external.countAclDenied(),
      });
    }
    this.http = new HttpServer({
      router,
      log: log.child({ module: 'http' }),
      host: config.http.host,
      port: config.http.port,
      adminToken: this.adminToken,
      access,
      audit: async (entry) => {
        await this.audit.record(entry);
      },
      limits: config.http,
      metrics: this.metrics,
      tls: httpTlsLoader(config.http.tls, clock),
    });
    registerTlsExpiryMetric({ registry: this.metrics, clock, log: log.child({ module: 'tls' }), config });

    this.components.push(
      {
        name: 'store',
        // The customers' in-memory view (success engineers) is loaded before the tickets that ask it start.
        start: async () => (this.storeMonitor.start(), await this.customers.start()),
        stop: async () => {
          this.storeMonitor.stop();
          this.customers.stop();
          this.db.close();
          await this.pool?.end().catch(() => undefined);
        },
      },
      { name: 'registry', start: () => this.registry.start(), stop: () => this.registry.stop() },
      { name: 'tickets', start: () => this.tickets.start(), stop: () => this.tickets.stop() },
      { name: 'helpdesk', start: () => this.webhook.start(), stop: () => this.webhook.stop() },
      { name: 'patches', start: () => this.patches.start(), stop: () => this.patches.stop() },
      { name: 'health', start: () => this.health.start(), stop: () => this.health.stop() },
      { name: 'ingest', start: () => this.writer.start(), stop: () => this.writer.stop() },
      {
        name: 'broker',
        start: () => this.broker.start(),
        stop: async () => {
          this.external?.stop();
          await this.broker.stop();
        },
        ready: () => this.broker.healthy?.() ?? true,
      },
      { name: 'scheduler', start: () => this.rollouts.start(), stop: () => this.rollouts.stop() },
      { name: 'http', start: () => this.http.start(), stop: () => this.http.stop() },
    );
    this.cluster = config.cluster.enabled ? this.clusterOf(config) : undefined;
    if (this.pool && !this.cluster) this.components.splice(1, 0, this.soleInstance(config, this.pool));
  }

  /** PostgreSQL without cluster mode: this daemon must be the store's only one (src/cluster/sole-instance.ts). */
  private soleInstance(config: Readonly<Config>, pool: PgPool): Component {
    const log = this.deps.log.child({ module: 'store' });
    const sole = new SoleInstance({
      store: new PgLeaseStore(pool, { own: false }),
      clock: this.deps.clock,
      log,
      instanceId: instanceIdOf(config),
      leaseMs: config.cluster.leaseS * 1000,
      renewMs: config.cluster.renewS * 1000,
      onLost: (reason) => {
        if (this.deps.onLeadershipLost) return this.deps.onLeadershipLost(reason);
        log.fatal({ reason }, 'store lease lost: stopping so no second daemon works the same store (exit 3)');
        void this.stop().finally(() => process.exit(3));
      },
    });
    return { name: 'store-lease', start: () => sole.claim(), stop: () => sole.release() };
  }

  /**
   * Cluster mode: the tickets' timers, the helpdesk dispatcher, the evaluator and the scheduler move from
   * the start sequence to the leader-only work, started when this instance wins the lease; a last
   * component joins the election once everything else (ingest, broker, HTTP) is up.
   */
  private clusterOf(config: Readonly<Config>): Cluster {
    const leaderOnly = new Set(['tickets', 'helpdesk', 'health', 'scheduler']);
    const work = this.components.filter((c) => leaderOnly.has(c.name)).map((c) => ({ name: c.name, start: c.start, stop: c.stop }));
    for (const c of this.components) {
      if (!leaderOnly.has(c.name)) continue;
      c.start = () => {};
      c.stop = () => {};
    }
    const log = this.deps.log.child({ module: 'cluster' });
    const cluster = new Cluster({
      config: config.cluster,
      instanceId: instanceIdOf(config),
      db: this.db,
      ...(this.pool ? { store: new PgLeaseStore(this.pool, { own: false }) } : {}),
      clock: this.deps.clock,
      log,
      metrics: this.metrics,
      work,
      afterElected: async () => {
        await this.external?.broker.setLivenessFeed(true);
        // Mosquitto's refused CONNECTs reach this evaluator only: every instance could read the broker's log.
        await this.external?.openSecurityFeed();
      },
      onLost: (reason) => {
        if (this.deps.onLeadershipLost) return this.deps.onLeadershipLost(reason);
        log.fatal({ reason }, 'leadership lost: stopping so no leader-only work outlives the lease (exit 3)');
        void this.stop().finally(() => process.exit(3));
      },
      reload: (id) => void this.registry.reload(id),
      deliverSecurity: (s) => this.health.onSecurityEvent(s),
    });
    // Right after the store: following starts before the registry loads; it stops (with the leader-only
    // work and the lease) last before the database closes.
    this.components.splice(1, 0, { name: 'cluster', start: () => cluster.follow(), stop: () => cluster.stop() });
    this.components.push({ name: 'election', start: () => cluster.start(), stop: () => {} });
    return cluster;
  }

  /**
   * The one daemon-side entry point for "this device can receive commands now" (PROTOCOL.md "Delivery of
   * daemon -> device commands", issue 9 fault 1): the embedded broker calls it when the device's SUBSCRIBE to
   * its own cmd/ topic is in place; behind an external broker, call it on a live (non-retained)
   * `{"online":true}` state, which agents publish only after their SUBACK. Sends every command still owed to
   * the device (offers not acted on, cancels of jobs not ended) and lets a waiting rollout offer it now.
   */
  deviceReady(deviceId: string): void {
    this.patches.onDeviceReady(deviceId).catch((err: unknown) => this.deps.log.warn({ err, deviceId }, 'owed commands not sent'));
    this.rollouts.onDeviceReady(deviceId);
  }

  async start(): Promise<void> {
    for (const c of this.components) {
      await c.start();
      this.started.push(c);
    }
    const ports = this.broker.ports();
    this.deps.log.info({ mqtt: ports.mqtt, mqtts: ports.mqtts, http: this.http.port(), https: this.config.http.tls.cert !== null }, 'xcared started');
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

  private liveRowQuery?: ReturnType<Database['prepare']>;
  /** The stored state of one device (a primary-key lookup; the statement is prepared once). */
  private liveRow(id: string): LiveRow | undefined {
    this.liveRowQuery ??= this.db.prepare('SELECT * FROM device_state WHERE device_id = ?');
    return this.liveRowQuery.get(id) as LiveRow | undefined;
  }

  private storedLiveness?: StoredLiveness;

  /**
   * Liveness as the health evaluator sees it; `revoked` for revoked devices. On a cluster follower (whose
   * evaluator does not run) and with `fromStore`, the leader's view as it last stored it (StoredLiveness).
   */
  private stateOf(device: DeviceRecord, fromStore = true): string {
    if (device.revokedAt !== null) return 'revoked';
    if (fromStore && this.following()) return (this.storedLiveness ??= new StoredLiveness(this.db)).stateOf(device.id).state;
    return this.health.stateOf(device.id) ?? 'unknown';
  }

  /** A cluster member that does not lead now (its evaluator is not running). */
  private following(): boolean {
    return this.cluster !== undefined && !this.cluster.isLeader();
  }

  private deviceView(device: DeviceRecord, row = this.liveRow(device.id)): DeviceView {
    return {
      ...device,
      state: this.stateOf(device),
      // Cluster: where `state` comes from (a follower serves the leader's stored view, as of its last tick).
      ...(this.cluster ? { stateSource: this.following() ? 'leader-store' : 'evaluator' } : {}),
      lastSeen: row?.last_seen ? new Date(row.last_seen).toISOString() : null,
      softwareVersion: row?.software_version ?? null,
      agentVersion: row?.agent_version ?? null,
    };
  }

  private deviceDetail(device: DeviceRecord): Record<string, unknown> {
    const row = this.liveRow(device.id);
    return {
      ...this.deviceView(device, row),
      connected: this.broker.isConnected(device.id),
      integrity: row?.integrity ?? null,
      heartbeats: row?.heartbeats ?? 0,
      lastHeartbeat: row?.heartbeat ? JSON.parse(row.heartbeat) : null,
      health: this.health.snapshot(device.id) ?? null,
      eligibility: this.subscriptions.eligibilityOf(device.id) ?? null,
      patches: this.patches.deviceStates(device.id),
    };
  }
}

/** openDatabase, with the file and SQLite's reason in the error (issue 10: "unable to open database file" named neither). */
/** The PostgreSQL store (`store.url`): connects and applies pending migrations, or throws STORE_OPEN naming the cause. */
function openPgStore(url: string): Database {
  try {
    return new PgSyncDatabase(url);
  } catch (err) {
    const e = err as Error & { code?: string };
    throw new XcareError('STORE_OPEN', `cannot open the PostgreSQL store ${redactUrl(url)}: ${e.message}${e.code ? ` (${e.code})` : ''}`, 500, { cause: err });
  }
}

function openStore(file: string): Database {
  try {
    return openDatabase(file);
  } catch (err) {
    const e = err as Error & { code?: string };
    throw new XcareError('STORE_OPEN', `cannot open the database ${file}: ${e.message}${e.code ? ` (${e.code})` : ''}`, 500, { cause: err });
  }
}

interface LiveRow {
  last_seen: number | null;
  online: number;
  connected: number;
  software_version: string | null;
  agent_version: string | null;
  integrity: string | null;
  heartbeat: string | null;
  heartbeats: number;
}
