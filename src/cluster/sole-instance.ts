import type { Clock } from '../clock.js';
import { XcareError } from '../errors.js';
import type { Logger } from '../log.js';
import { hostname } from 'node:os';
import { LEADER_LEASE, LeaderElector } from './leader-elector.js';
import type { LeaseStore } from './lease-store.js';

/**
 * A single daemon (cluster mode off) on a shared store (PostgreSQL) claims the same leader lease a cluster
 * uses, and keeps renewing it. Two daemons pointed at one database without `cluster.enabled` would each run
 * the evaluator, the scheduler and the webhook dispatcher: every loss ticketed twice, every offer sent
 * twice. The second one now waits up to one lease (a daemon killed -9 a moment ago leaves its lease to
 * expire) and then refuses to start (STORE_IN_USE), naming the holder. On SQLite the data-dir lock does this.
 */
export class SoleInstance {
  private elector: LeaderElector | undefined;

  constructor(
    private readonly deps: {
      store: LeaseStore;
      clock: Clock;
      log: Logger;
      instanceId: string;
      leaseMs: number;
      renewMs: number;
      /** The lease was lost while running (the database was unreachable for too long): stop (exit 3). */
      onLost(reason: string): void;
    },
  ) {}

  /** Resolves once this instance holds the lease; throws STORE_IN_USE when another keeps it for a whole lease. */
  async claim(): Promise<void> {
    const { clock, leaseMs, renewMs, store } = this.deps;
    // Restarted after a crash on this host: the lease names our dead predecessor (default instance ids are
    // <hostname>-<pid>); hand it over now instead of waiting out the lease. A live or reused pid waits.
    const held = await store.read(LEADER_LEASE);
    if (held && held.expiresAt > clock.now() && held.holder !== this.deps.instanceId && deadOnThisHost(held.holder)) {
      await store.release(LEADER_LEASE, held.holder, held.token);
      this.deps.log.info({ holder: held.holder, term: held.token }, 'store lease of a daemon that died on this host taken over');
    }
    let won!: () => void;
    const elected = new Promise<void>((resolve) => (won = resolve));
    const elector = new LeaderElector({ ...this.deps, onElected: () => won(), onLost: (reason) => this.deps.onLost(reason) });
    this.elector = elector;
    elector.start();
    let timer: ReturnType<Clock['setTimeout']> | undefined;
    const gaveUp = new Promise<'timeout'>((resolve) => (timer = clock.setTimeout(() => resolve('timeout'), leaseMs + 2 * renewMs)));
    const outcome = await Promise.race([elected, gaveUp]);
    clock.clearTimeout(timer);
    if (outcome === 'timeout') {
      await elector.stop();
      this.elector = undefined;
      const holder = elector.view().holder;
      throw new XcareError(
        'STORE_IN_USE',
        `another xcared (${holder ?? 'unknown'}) keeps this store's lease: several daemons on one store need cluster.enabled: true and an external broker (README "At scale")`,
      );
    }
  }

  /** Releases the lease (a restart takes it at once). */
  async release(): Promise<void> {
    await this.elector?.stop();
    this.elector = undefined;
  }
}

/** Whether `holder` is a default instance id (`<hostname>-<pid>`) of this host whose process is gone. */
export function deadOnThisHost(holder: string): boolean {
  const prefix = `${hostname()}-`;
  if (!holder.startsWith(prefix)) return false;
  const pid = Number(holder.slice(prefix.length));
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}
