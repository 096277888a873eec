import type { Registry } from 'prom-client';
import type { Clock } from '../clock.js';
import type { Database } from '../db/database.js';
import type { Logger } from '../log.js';
import type { Config } from '../config/schema.js';
import { LeaderElector, type LeadershipView } from './leader-elector.js';
import { SqliteLeaseStore, type LeaseStore } from './lease-store.js';
import { refuseDuplicateInstance } from './instance-id.js';
import { RegistryFollower } from './registry-follower.js';
import { SecurityRelay, type RelayedSignal } from './security-relay.js';

/** A component that runs on the leader only (health evaluator, rollout scheduler, webhook dispatcher...). */
export interface LeaderOnlyWork {
  name: string;
  start(): void | Promise<void>;
  stop(): void | Promise<void>;
}

export interface ClusterDeps {
  config: Config['cluster'];
  instanceId: string;
  db: Database;
  clock: Clock;
  log: Logger;
  metrics: Registry;
  /** Started in order when this instance is elected, stopped in reverse when it stops. */
  work: LeaderOnlyWork[];
  /** After the leader-only work started: open the liveness feed. */
  afterElected?(): Promise<void>;
  /** Leadership lost while running: the process must stop its leader-only work at once (see App). */
  onLost(reason: string): void;
  /** Another store than the app's SQLite (tests: PostgreSQL). */
  store?: LeaseStore;
  /** Re-read one device into the in-memory registry (a change another instance committed). */
  reload(deviceId: string): void;
  /** The evaluator's security input (HealthEvaluator.onSecurityEvent), fed on the leader only. */
  deliverSecurity(signal: RelayedSignal): void;
}

/**
 * One xcared among several (issue 13, item 3): every instance ingests and serves the API; the
 * leader-only work starts when this instance wins the lease and never runs on two instances at once.
 * A new leader starts that work exactly as a restarted daemon does (the evaluator gives every device
 * a fresh interval), so a failover opens no ticket by itself.
 */
export class Cluster {
  private readonly elector: LeaderElector;
  private readonly store: LeaseStore;
  private readonly follower: RegistryFollower;
  private readonly relay: SecurityRelay;
  private started: LeaderOnlyWork[] = [];

  constructor(private readonly deps: ClusterDeps) {
    this.store = deps.store ?? new SqliteLeaseStore(deps.db);
    this.elector = new LeaderElector({
      store: this.store,
      clock: deps.clock,
      log: deps.log,
      metrics: deps.metrics,
      instanceId: deps.instanceId,
      leaseMs: deps.config.leaseS * 1000,
      renewMs: deps.config.renewS * 1000,
      onElected: () => this.elected(),
      onLost: (reason) => deps.onLost(reason),
    });
    const intervalMs = deps.config.renewS * 1000;
    this.follower = new RegistryFollower({ db: deps.db, clock: deps.clock, log: deps.log, intervalMs, reload: deps.reload });
    this.relay = new SecurityRelay({ db: deps.db, clock: deps.clock, log: deps.log, intervalMs, leading: () => this.isLeader(), deliver: deps.deliverSecurity });
  }

  /**
   * Follow the other instances' changes (registry, security signals): call right after the store opens,
   * before the registry loads, so a change committed between the two is re-read, never missed.
   */
  async follow(): Promise<void> {
    await refuseDuplicateInstance({ store: this.store, clock: this.deps.clock, log: this.deps.log, instanceId: this.deps.instanceId, renewMs: this.deps.config.renewS * 1000 });
    this.follower.start();
    this.relay.start();
  }

  /** Join the election (once everything else, ingest, broker and HTTP, is up). */
  start(): void {
    this.elector.start();
  }

  /** A security signal this instance received (EMQX hooks): judged here when leading, else relayed to the leader. */
  reportSecurity(signal: RelayedSignal): void {
    this.relay.report(signal);
  }

  /** Stop following, the leader-only work and the election, in that order (the lease is released last). */
  async stop(): Promise<void> {
    this.follower.stop();
    this.relay.stop();
    // Leader-only work first, then the lease: no follower starts while our work still runs.
    for (const w of [...this.started].reverse()) {
      try {
        await w.stop();
      } catch (err) {
        this.deps.log.error({ err, component: w.name }, 'stop failed');
      }
    }
    this.started = [];
    await this.elector.stop();
  }

  isLeader(): boolean {
    return this.elector.isLeader();
  }

  view(): LeadershipView {
    return this.elector.view();
  }

  private async elected(): Promise<void> {
    for (const w of this.deps.work) {
      await w.start();
      this.started.push(w);
      this.deps.log.info({ component: w.name }, 'leader-only work started');
    }
    await this.deps.afterElected?.();
  }
}
