import { hostname } from 'node:os';
import { processRuns } from '../data-dir-lock.js';
import type { Clock, TimerHandle } from '../clock.js';
import { XcareError } from '../errors.js';
import type { Logger } from '../log.js';
import { LEADER_LEASE } from './leader-elector.js';
import { refuseDuplicateInstance } from './instance-id.js';
import type { LeaseStore } from './lease-store.js';

/**
 * A single daemon (cluster mode off) on a shared store (PostgreSQL) claims the leader lease a cluster uses,
 * and renews it every `renewMs`. Two daemons pointed at one database without `cluster.enabled` would each
 * run the evaluator, the scheduler and the webhook dispatcher: every loss ticketed twice, every offer sent
 * twice. The second one waits up to one lease (a daemon killed -9 a moment ago leaves its lease to expire;
 * one that died on this host is taken over at once) and then refuses to start (STORE_IN_USE, naming the
 * holder). On SQLite the data-dir lock does this.
 *
 * Unlike a cluster leader, a sole daemon does not stop when renewals fail because the store is unreachable:
 * a storage fault is our own outage, not a reason to stop watching the fleet (RULES.md "Our own outages"),
 * and no other daemon can use the store meanwhile either. Only finding another holder once the store
 * answers again (it took the lease while ours lapsed) stops this one (`onLost`: exit 3).
 */
export class SoleInstance {
  private timer: TimerHandle | undefined;
  private stopped = true;
  private token: number | undefined;
  private unreachable = false;

  constructor(
    private readonly deps: {
      store: LeaseStore;
      clock: Clock;
      log: Logger;
      instanceId: string;
      leaseMs: number;
      renewMs: number;
      /** Another daemon holds the store's lease now: stop (exit 3). */
      onLost(reason: string): void;
    },
  ) {}

  /** Resolves once this instance holds the lease; throws STORE_IN_USE when another keeps it for a whole lease. */
  async claim(): Promise<void> {
    const { clock, leaseMs, renewMs, store, instanceId, log } = this.deps;
    await refuseDuplicateInstance(this.deps);
    const held = await store.read(LEADER_LEASE);
    if (held && held.expiresAt > clock.now() && held.holder !== instanceId && deadOnThisHost(held.holder)) {
      await store.release(LEADER_LEASE, held.holder, held.token);
      log.info({ holder: held.holder, term: held.token }, 'store lease of a daemon that died on this host taken over');
    }
    const giveUpAt = clock.monotonicNow() + leaseMs + 2 * renewMs;
    for (;;) {
      const lease = await store.acquire(LEADER_LEASE, instanceId, clock.now(), leaseMs);
      if (lease.holder === instanceId) {
        this.token = lease.token;
        break;
      }
      if (clock.monotonicNow() >= giveUpAt) {
        throw new XcareError(
          'STORE_IN_USE',
          `another xcared (${lease.holder}) keeps this store's lease: several daemons on one store need cluster.enabled: true and an external broker (README "At scale")`,
        );
      }
      await new Promise<void>((resolve) => clock.setTimeout(resolve, renewMs));
    }
    log.info({ instance: instanceId, term: this.token }, 'store lease taken: this daemon is the only one on the store');
    this.stopped = false;
    this.schedule();
  }

  /** Stops renewing and releases the lease (a restart takes it at once). */
  async release(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.deps.clock.clearTimeout(this.timer);
    if (this.token !== undefined) await this.deps.store.release(LEADER_LEASE, this.deps.instanceId, this.token).catch(() => undefined);
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = this.deps.clock.setTimeout(() => void this.renew().finally(() => this.schedule()), this.deps.renewMs);
  }

  private async renew(): Promise<void> {
    const { store, clock, instanceId, leaseMs, log } = this.deps;
    let holder: string;
    try {
      const lease = await store.acquire(LEADER_LEASE, instanceId, clock.now(), leaseMs);
      holder = lease.holder;
      if (holder === instanceId) this.token = lease.token;
    } catch (err) {
      if (!this.unreachable) log.warn({ err }, 'store lease not renewed: store unreachable; carrying on');
      this.unreachable = true;
      return;
    }
    if (this.unreachable) log.info('store lease renewed again');
    this.unreachable = false;
    if (holder !== instanceId && !this.stopped) {
      this.stopped = true;
      this.deps.onLost(`another xcared (${holder}) took this store's lease while ours lapsed`);
    }
  }
}

/** Whether `holder` is a default instance id (`<hostname>-<pid>`) of this host whose process is gone (or a zombie). */
export function deadOnThisHost(holder: string): boolean {
  const prefix = `${hostname()}-`;
  if (!holder.startsWith(prefix)) return false;
  const pid = Number(holder.slice(prefix.length));
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false;
  return !processRuns(pid);
}
