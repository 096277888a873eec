import { readFileSync } from 'node:fs';
import { ManualClock } from '../../src/clock.js';
import { configSchema } from '../../src/config/schema.js';
import { BENCH_PG_URL, benchStore, type StoreKind } from './bench-store.js';
import { HealthEvaluator } from '../../src/health/health-evaluator.js';
import { silentLogger } from '../../src/log.js';
import type { Heartbeat } from '../../src/protocol/types.js';
import type { DeviceDirectory, DeviceRecord } from '../../src/registry/types.js';
import type { ConditionReport, ConditionSink, TicketKind } from '../../src/tickets/types.js';
import { tempDir } from '../helpers/temp-dir.js';

/**
 * Health evaluator benchmark (issue 3, "Performance"): 100,000 registered devices (20 % gateways, each with 4
 * sensors, 10 gateways per customer) in a temp SQLite, ManualClock ticks of 1 s. Every tick 1 % of the devices
 * send input (gateways heartbeat every 100 s listing their sensors; a few go silent, a few send a Last Will and
 * come back). Prints tick time p50/p99/max, heap and RSS, the start-up rebuild time and the time from a Last Will
 * to the first gateway_loss raise (grace + tick). Target: p99 tick < 50 ms.
 * BENCH_EVAL_STORE=postgres runs the evaluator's store on PostgreSQL (PgSyncDatabase, as the daemon with
 * `store.url`; a fresh schema of BENCH_DATABASE_URL or XCARE_TEST_DATABASE_URL): a tick is synchronous, so
 * its time is how long it blocks the daemon's event loop.
 */

const T0 = Date.parse('2026-11-26T17:00:00.000Z');
const INTERVAL_S = 100;

class IndexedDirectory implements DeviceDirectory {
  private readonly byId = new Map<string, DeviceRecord>();
  private readonly children = new Map<string, DeviceRecord[]>();
  private readonly byCustomer = new Map<string, DeviceRecord[]>();
  private gateways = 0;
  constructor(devices: DeviceRecord[]) {
    for (const d of devices) {
      this.byId.set(d.id, d);
      if (d.parent) (this.children.get(d.parent) ?? this.children.set(d.parent, []).get(d.parent)!).push(d);
      if (d.type === 'gateway') {
        this.gateways++;
        (this.byCustomer.get(d.customer) ?? this.byCustomer.set(d.customer, []).get(d.customer)!).push(d);
      }
    }
  }
  get(id: string) {
    return this.byId.get(id);
  }
  all() {
    return this.byId.values();
  }
  childrenOf(id: string) {
    return this.children.get(id) ?? [];
  }
  gatewaysOf(customer: string) {
    return this.byCustomer.get(customer) ?? [];
  }
  gatewayCount() {
    return this.gateways;
  }
  onChange() {
    return () => {};
  }
}

/** Counts raises and clears, keeps open tickets by (kind, subject), gateway kinds merged; records raise times. */
class CountingSink implements ConditionSink {
  raised = 0;
  cleared = 0;
  readonly open = new Set<string>();
  readonly firstRaise = new Map<string, number>();
  constructor(private readonly clock: ManualClock) {}
  private key(kind: TicketKind, subject: string) {
    return kind === 'gateway_loss' || kind === 'gateway_partial' ? `gateway|${subject}` : `${kind}|${subject}`;
  }
  raise(r: ConditionReport): void {
    this.raised++;
    this.open.add(this.key(r.kind, r.subject));
    const k = `${r.kind}|${r.subject}`;
    if (!this.firstRaise.has(k)) this.firstRaise.set(k, this.clock.now());
  }
  clear(kind: TicketKind, subject: string): void {
    this.cleared++;
    this.open.delete(this.key(kind, subject));
  }
  hasOpen(kinds: readonly TicketKind[], subject: string): boolean {
    return kinds.some((k) => this.open.has(this.key(k, subject)));
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const round = (n: number, digits = 2) => Number(n.toFixed(digits));
const mb = (bytes: number) => round(bytes / 1024 / 1024, 1);

export async function runEvaluatorBench(opts: { devices?: number; ticks?: number; log?: (s: string) => void } = {}): Promise<Record<string, number | string>> {
  const total = opts.devices ?? Number(process.env.BENCH_EVAL_DEVICES ?? 100_000);
  const measuredTicks = opts.ticks ?? Number(process.env.BENCH_EVAL_TICKS ?? 600);
  const log = opts.log ?? ((s: string) => process.stdout.write(`${s}\n`));
  const gatewaysN = Math.max(1, Math.round(total / 5));
  const sensorsPerGateway = 4;
  const gatewaysPerCustomer = 10;

  const devices: DeviceRecord[] = [];
  const gatewayIds: string[] = [];
  const sensorsOf = new Map<string, { id: string; ok: boolean }[]>();
  for (let g = 0; g < gatewaysN; g++) {
    const id = `gw-${String(g).padStart(6, '0')}`;
    const customer = `cust-${String(Math.floor(g / gatewaysPerCustomer)).padStart(5, '0')}`;
    gatewayIds.push(id);
    devices.push(record(id, 'gateway', customer, null));
    const sensors: { id: string; ok: boolean }[] = [];
    for (let s = 0; s < sensorsPerGateway && devices.length < total; s++) {
      const sid = `${id}-s${s}`;
      devices.push(record(sid, 'sensor', customer, id));
      sensors.push({ id: sid, ok: true });
    }
    sensorsOf.set(id, sensors);
  }

  const dir = tempDir('xcare-eval-bench-');
  const kind: StoreKind = process.env.BENCH_EVAL_STORE === 'postgres' ? 'postgres' : 'sqlite';
  if (kind === 'postgres' && !BENCH_PG_URL) throw new Error('BENCH_EVAL_STORE=postgres needs BENCH_DATABASE_URL or XCARE_TEST_DATABASE_URL');
  const store = await benchStore(kind, dir.path, 'eval');
  const db = store.open();
  try {
    // Multi-row INSERTs (500 rows each): on PostgreSQL every statement is a round trip.
    const chunk = 500;
    db.transaction(() => {
      for (let i = 0; i < devices.length; i += chunk) {
        const part = devices.slice(i, i + chunk);
        db.prepare(
          `INSERT INTO devices (id, type, parent, customer, installer, tier, token_hash, created_at) VALUES ${part.map(() => `(?, ?, ?, ?, 'minnovation', 'xcare', 'x', ?)`).join(', ')}`,
        ).run(...part.flatMap((d) => [d.id, d.type, d.parent, d.customer, d.createdAt]));
        // The fleet was up before this start: the ingest writer stored gateways' heartbeats, we stored sensors' state.
        db.prepare(`INSERT INTO device_state (device_id, last_seen, interval_s, online, state_changed_at) VALUES ${part.map(() => '(?, ?, ?, 1, ?)').join(', ')}`).run(
          ...part.flatMap((d) => [d.id, d.type === 'gateway' ? T0 - 10_000 : null, d.type === 'gateway' ? INTERVAL_S : null, T0 - 10_000]),
        );
      }
    })();

    const clock = new ManualClock(T0);
    const sink = new CountingSink(clock);
    const config = configSchema.parse({}).health;
    const ev = new HealthEvaluator({
      clock,
      db,
      log: silentLogger(),
      config,
      directory: new IndexedDirectory(devices),
      sink,
      expectedIntegrity: () => undefined,
    });
    const heapBefore = process.memoryUsage().heapUsed;
    let t = performance.now();
    ev.start();
    const startMs = performance.now() - t;
    const heapAfterStart = process.memoryUsage().heapUsed;

    // Gateways heartbeat every INTERVAL_S, spread evenly: each 1 s tick, gateways/INTERVAL_S of them (with their
    // sensors that is 1 % of all devices). A few go silent for a while, a few send a Last Will and come back.
    const perTick = Math.ceil(gatewaysN / INTERVAL_S);
    const silentUntil = new Map<string, number>();
    let seed = 42;
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const hb = (seq: number, id: string): Heartbeat => ({
      seq,
      ts: '2026-11-26T17:00:00.000Z',
      intervalS: INTERVAL_S,
      agentVersion: '1.0.0',
      softwareVersion: '2.3.1',
      sensors: sensorsOf.get(id),
      subsystems: [{ name: 'uplink', ok: true }],
    });

    const tickMs: number[] = [];
    let inputs = 0;
    let inputMs = 0;
    const warmupTicks = 3 * INTERVAL_S + 10; // a full loss horizon, so steady state includes losses and returns
    const totalTicks = warmupTicks + measuredTicks;
    let willProbe: { id: string; at: number } | undefined;
    for (let tick = 0; tick < totalTicks; tick++) {
      const now = clock.now();
      t = performance.now();
      const slot = tick % INTERVAL_S;
      for (let i = slot * perTick; i < Math.min(gatewaysN, (slot + 1) * perTick); i++) {
        const id = gatewayIds[i]!;
        const until = silentUntil.get(id);
        if (until !== undefined) {
          if (now < until) continue;
          silentUntil.delete(id);
        }
        // ~0.1 % of the beating gateways go silent for 2-10 min (-> gateway_loss, then back).
        if (rnd() < 0.001) {
          silentUntil.set(id, now + 120_000 + Math.floor(rnd() * 480_000));
          continue;
        }
        // ~0.05 % flap: a Last Will followed by a reconnect within the grace.
        if (rnd() < 0.0005) {
          ev.onState(id, false, now);
          ev.onState(id, true, now + 5);
        }
        ev.onHeartbeat(id, hb(tick, id), now);
        inputs += 1 + sensorsPerGateway;
      }
      inputMs += performance.now() - t;
      if (tick === warmupTicks + Math.floor(measuredTicks / 2)) {
        // Last Will probe: 300 ms after a tick, not aligned to the tick period.
        const id = gatewayIds[(slot * perTick + 1) % gatewaysN]!;
        willProbe = { id, at: now + 300 };
        silentUntil.set(id, Infinity);
      }
      if (willProbe && clock.now() === willProbe.at - 300) {
        clock.advance(300);
        ev.onState(willProbe.id, false, clock.now());
        clock.advance(config.tickMs - 300 - 1);
      } else {
        clock.advance(config.tickMs - 1);
      }
      // The tick itself, timed: advance the last ms so the evaluator's own timer fires it.
      t = performance.now();
      clock.advance(1);
      const took = performance.now() - t;
      if (tick >= warmupTicks) tickMs.push(took);
    }
    const willToRaiseMs = willProbe ? (sink.firstRaise.get(`gateway_loss|${willProbe.id}`) ?? NaN) - willProbe.at : NaN;
    const mem = process.memoryUsage();
    ev.stop();
    const sorted = [...tickMs].sort((a, b) => a - b);
    const counts = ev.countsByState();
    const result: Record<string, number | string> = {
      store: kind,
      load: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
      devices: devices.length,
      gateways: gatewaysN,
      customers: Math.ceil(gatewaysN / gatewaysPerCustomer),
      measuredTicks: tickMs.length,
      inputsPerTick: round(inputs / totalTicks, 0),
      startRebuildMs: round(startMs, 1),
      tickP50Ms: round(percentile(sorted, 50), 3),
      tickP99Ms: round(percentile(sorted, 99), 3),
      tickMaxMs: round(sorted[sorted.length - 1] ?? NaN, 3),
      inputUsPerDevice: round((inputMs * 1000) / Math.max(1, inputs), 3),
      lastWillToFirstRaiseMs: willToRaiseMs,
      lastWillGraceMs: config.lastWillGraceS * 1000,
      heapUsedMb: mb(mem.heapUsed),
      evaluatorHeapMb: mb(heapAfterStart - heapBefore),
      rssMb: mb(mem.rss),
      raised: sink.raised,
      cleared: sink.cleared,
      lostAtEnd: counts.lost,
      onlineAtEnd: counts.online,
      target: percentile(sorted, 99) < 50 ? 'p99 < 50 ms: met' : 'p99 < 50 ms: MISSED',
    };
    log('evaluator bench:');
    for (const [k, v] of Object.entries(result)) log(`  ${k.padEnd(24)} ${v}`);
    return result;
  } finally {
    db.close();
    await store.drop();
    dir.cleanup();
  }
}

function record(id: string, type: 'gateway' | 'sensor', customer: string, parent: string | null): DeviceRecord {
  return {
    id,
    type,
    parent,
    customer,
    installer: 'minnovation',
    tier: 'xcare',
    subscriptionStart: null,
    subscriptionEnd: null,
    tags: [],
    createdAt: T0 - 86_400_000,
    revokedAt: null,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  runEvaluatorBench().catch((err) => {
    process.stderr.write(`${(err as Error).stack ?? err}\n`);
    process.exit(1);
  });
}
