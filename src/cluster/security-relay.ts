import type { Clock } from '../clock.js';
import { EventsTail } from './events-tail.js';
import type { Database } from '../db/database.js';
import type { Logger } from '../log.js';
import { isDeviceId } from '../protocol/names.js';

/** The `events` kind a follower writes for the security signals it received (EMQX hooks). */
export const SECURITY_SIGNAL_EVENT = 'security_signal';

/** A signal as the hooks report it: a refused CONNECT or a denied topic. */
export interface RelayedSignal {
  kind: 'auth_failure' | 'acl_violation';
  deviceId?: string;
  detail?: string;
}

/** Distinct (kind, device) pairs buffered between two flushes; beyond, signals are dropped and logged. */
const MAX_KEYS = 10_000;
/** One stored row stands for at most this many signals (a bound on what the leader replays from one row). */
const MAX_COUNT = 100_000;

export interface SecurityRelayDeps {
  db: Database;
  clock: Clock;
  log: Logger;
  intervalMs: number;
  /** True while this instance leads (its evaluator runs). */
  leading(): boolean;
  /** The leader's evaluator (HealthEvaluator.onSecurityEvent). */
  deliver(signal: RelayedSignal): void;
}

interface Pending {
  kind: RelayedSignal['kind'];
  deviceId: string | null;
  count: number;
  detail?: string;
}

/**
 * Cluster mode: EMQX asks whichever instance its load balancer picks (`POST /mqtt/auth`, `/mqtt/acl`), but
 * only the leader's evaluator judges security signals. A follower buffers its signals, counted per (kind,
 * device), and writes them every `intervalMs` as `events` rows of kind `security_signal`
 * (`{"kind","count","detail"}`) in one transaction; the leader reads rows past the last id it saw (the same
 * change feed as RegistryFollower) and replays each count into its evaluator. So a burst split over the
 * instances still adds up in one window. A refused CONNECT is stored without a device id: the id it claimed
 * is untrusted (the burst counts fleet-wide), and would otherwise land in that device's event history.
 * Rows written while this instance followed are skipped when it takes over: their leader has judged them.
 */
export class SecurityRelay {
  private pending = new Map<string, Pending>();
  private dropped = 0;
  private readonly tail: EventsTail;
  private readonly insert;

  constructor(private readonly deps: SecurityRelayDeps) {
    this.tail = new EventsTail({ ...deps, failure: 'security signal relay failed', kinds: [SECURITY_SIGNAL_EVENT], pass: () => this.sync() });
    this.insert = deps.db.prepare(`INSERT INTO events (ts, device_id, kind, data) VALUES (?, ?, '${SECURITY_SIGNAL_EVENT}', ?)`);
  }

  start(): void {
    this.tail.start();
  }

  /** Stop, writing what is still buffered (a follower's signals are not lost to a clean stop). */
  stop(): void {
    this.tail.stop();
    try {
      this.flush();
    } catch (err) {
      this.deps.log.error({ err }, 'security signals not relayed to the leader');
    }
  }

  /** A signal received on this instance: straight to the evaluator when leading, else buffered for the leader. */
  report(signal: RelayedSignal): void {
    if (this.deps.leading()) {
      this.deps.deliver(signal);
      return;
    }
    const deviceId = signal.kind === 'acl_violation' && isDeviceId(signal.deviceId) ? signal.deviceId : null;
    const key = `${signal.kind}\0${deviceId ?? ''}`;
    const p = this.pending.get(key);
    if (p) {
      if (p.count < MAX_COUNT) p.count++;
      return;
    }
    if (this.pending.size >= MAX_KEYS) {
      this.dropped++;
      return;
    }
    this.pending.set(key, { kind: signal.kind, deviceId, count: 1, ...(signal.detail ? { detail: signal.detail.slice(0, 200) } : {}) });
  }

  /** One pass: a follower writes its buffer; the leader replays rows other instances wrote. */
  sync(): void {
    if (this.deps.leading()) this.replay();
    else {
      this.flush();
      this.skip();
    }
  }

  private flush(): void {
    if (this.pending.size === 0 && this.dropped === 0) return;
    const rows = [...this.pending.values()];
    const now = this.deps.clock.now();
    // Committed before the buffer is cleared: a failed write keeps the signals for the next pass.
    this.deps.db.transaction(() => {
      for (const r of rows) this.insert.run(now, r.deviceId, JSON.stringify({ kind: r.kind, count: r.count, ...(r.detail ? { detail: r.detail } : {}) }));
    })();
    this.pending = new Map();
    if (this.dropped > 0) this.deps.log.warn({ dropped: this.dropped, max: MAX_KEYS }, 'security signals dropped: too many distinct devices between two relays');
    this.dropped = 0;
  }

  /** A follower moves past every row: when it leads one day, older rows were its predecessor's to judge. */
  private skip(): void {
    this.tail.read();
  }

  private replay(): void {
    // Buffered while this instance still followed: ours to judge now.
    for (const p of this.pending.values()) {
      const signal: RelayedSignal = { kind: p.kind, ...(p.deviceId ? { deviceId: p.deviceId } : {}), ...(p.detail ? { detail: p.detail } : {}) };
      for (let i = 0; i < p.count; i++) this.deps.deliver(signal);
    }
    this.pending.clear();
    for (const row of this.tail.read()) {
      const signal = parseRow(row.device_id, row.data ?? '');
      if (!signal) {
        this.deps.log.warn({ eventId: row.id }, 'malformed security_signal event ignored');
        continue;
      }
      for (let i = 0; i < signal.count; i++) this.deps.deliver(signal.signal);
    }
  }
}

/** A stored row back to a signal and its count; undefined when it is not one we write. */
function parseRow(deviceId: string | null, data: string): { signal: RelayedSignal; count: number } | undefined {
  let body: unknown;
  try {
    body = JSON.parse(data);
  } catch {
    return undefined;
  }
  if (typeof body !== 'object' || body === null) return undefined;
  const { kind, count, detail } = body as Record<string, unknown>;
  if (kind !== 'auth_failure' && kind !== 'acl_violation') return undefined;
  if (typeof count !== 'number' || !Number.isInteger(count) || count < 1 || count > MAX_COUNT) return undefined;
  if (detail !== undefined && typeof detail !== 'string') return undefined;
  if (deviceId !== null && !isDeviceId(deviceId)) return undefined;
  return { signal: { kind, ...(deviceId ? { deviceId } : {}), ...(detail ? { detail } : {}) }, count };
}
