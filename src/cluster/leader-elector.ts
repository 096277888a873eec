import { Gauge, type Registry } from 'prom-client';
import type { Clock, TimerHandle } from '../clock.js';
import type { Logger } from '../log.js';
import type { Lease, LeaseStore } from './lease-store.js';

export const LEADER_LEASE = 'leader';

export interface LeaderElectorDeps {
  store: LeaseStore;
  clock: Clock;
  log: Logger;
  metrics?: Registry;
  instanceId: string;
  leaseMs: number;
  /** How often the leader renews and followers try to take over (at most half the lease). */
  renewMs: number;
  /** This instance became leader in term `token`: start the leader-only work. Awaited before the next renewal. */
  onElected(token: number): Promise<void> | void;
  /**
   * This instance can no longer be sure it leads (a renewal failed or came too late): the leader-only
   * work must stop before the lease runs out on the others' clocks. Called once.
   */
  onLost(reason: string): void;
}

/** What /readyz and logs say about the cluster. */
export interface LeadershipView {
  instance: string;
  leader: boolean;
  /** The current holder as last read, and its term (fencing token). */
  holder: string | null;
  term: number | null;
}

/**
 * Leader election through the database (issue 13, item 3): a lease row renewed by the leader every
 * `renewMs`, taken over by a follower once it has expired (`leaseMs` without renewal), each change of
 * holder under a new fencing token. A leader that misses renewals steps down (`onLost`) at
 * `expiresAt - renewMs` by its own clock, before any follower may take over at `expiresAt`; clocks of
 * the instances must agree to well under `renewMs` (NTP), which is what the margin covers.
 */
export class LeaderElector {
  private timer: TimerHandle | undefined;
  private lease: Lease | undefined;
  private leading = false;
  private lost = false;
  private stopped = true;
  private validUntil = 0;
  private running: Promise<void> | undefined;
  private gauge: Gauge<'instance'> | undefined;
  private termGauge: Gauge | undefined;

  constructor(private readonly deps: LeaderElectorDeps) {}

  start(): void {
    if (this.deps.metrics && !this.gauge) {
      this.gauge = new Gauge({ name: 'xcare_leader', help: 'This instance leads the cluster (1) or follows (0)', labelNames: ['instance'] as const, registers: [this.deps.metrics] });
      this.termGauge = new Gauge({ name: 'xcare_leader_term', help: 'Leadership term (fencing token) this instance last saw', registers: [this.deps.metrics] });
    }
    this.gauge?.set({ instance: this.deps.instanceId }, 0);
    this.stopped = false;
    this.deps.log.info({ instance: this.deps.instanceId, leaseMs: this.deps.leaseMs, renewMs: this.deps.renewMs }, 'joining leader election');
    this.tick();
  }

  /** Stop electing; a leader releases its lease so a follower takes over at its next attempt. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.deps.clock.clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
    if (this.leading && this.lease && !this.lost) {
      await this.deps.store.release(LEADER_LEASE, this.deps.instanceId, this.lease.token).catch((err: unknown) => this.deps.log.warn({ err }, 'could not release the leader lease'));
      this.deps.log.info({ term: this.lease.token }, 'leader lease released');
    }
    this.leading = false;
    this.gauge?.set({ instance: this.deps.instanceId }, 0);
  }

  isLeader(): boolean {
    return this.leading && !this.lost && this.deps.clock.now() < this.validUntil;
  }

  /** The fencing token of this instance's term while it leads, else undefined. */
  term(): number | undefined {
    return this.isLeader() ? this.lease?.token : undefined;
  }

  view(): LeadershipView {
    return { instance: this.deps.instanceId, leader: this.isLeader(), holder: this.lease?.holder ?? null, term: this.lease?.token ?? null };
  }

  private tick(): void {
    if (this.stopped) return;
    this.running = this.attempt().finally(() => {
      this.running = undefined;
      if (!this.stopped && !this.lost) this.timer = this.deps.clock.setTimeout(() => this.tick(), this.deps.renewMs);
    });
  }

  private async attempt(): Promise<void> {
    const { store, clock, instanceId, leaseMs, renewMs, log } = this.deps;
    const now = clock.now();
    let lease: Lease;
    try {
      lease = await store.acquire(LEADER_LEASE, instanceId, now, leaseMs);
    } catch (err) {
      log.warn({ err }, 'leader lease: store unreachable');
      if (this.leading && clock.now() >= this.validUntil) this.stepDown('lease not renewed in time (store unreachable)');
      return;
    }
    const previous = this.lease;
    this.lease = lease;
    this.termGauge?.set(lease.token);
    if (lease.holder !== instanceId) {
      if (this.leading) this.stepDown(`lease taken over by ${lease.holder} (term ${lease.token})`);
      else if (previous?.holder !== lease.holder || previous?.token !== lease.token) log.info({ leader: lease.holder, term: lease.token }, 'following');
      return;
    }
    // Our answer may have come late: the term is only ours until expiresAt on the others' clocks.
    this.validUntil = now + leaseMs - renewMs;
    if (clock.now() >= this.validUntil) {
      if (this.leading) this.stepDown('lease renewal answered too late');
      return;
    }
    if (this.leading && previous && previous.token !== lease.token) {
      // We lost the term in between without noticing (e.g. a long pause): the old term's work is void.
      this.stepDown(`term changed from ${previous.token} to ${lease.token} while leading`);
      return;
    }
    if (!this.leading) {
      this.leading = true;
      this.gauge?.set({ instance: instanceId }, 1);
      log.info({ term: lease.token, leaseMs }, 'elected leader');
      try {
        await this.deps.onElected(lease.token);
      } catch (err) {
        log.error({ err }, 'starting the leader-only work failed');
        this.stepDown('leader-only work failed to start');
      }
    }
  }

  private stepDown(reason: string): void {
    if (this.lost) return;
    this.lost = true;
    this.leading = false;
    this.gauge?.set({ instance: this.deps.instanceId }, 0);
    this.deps.log.error({ reason, term: this.lease?.token }, 'lost leadership');
    this.deps.onLost(reason);
  }
}
