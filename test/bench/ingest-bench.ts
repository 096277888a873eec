import { LoadClient } from './mqtt-load.js';
import { procStat, startBareAedes, startMosquitto, startXcared, type BenchTarget } from './bench-targets.js';

/**
 * Ingest benchmark (issue 12): the same N devices on real MQTT 3.1.1 connections, QoS 1 heartbeats of
 * ~560 bytes at stepped offered rates, against xcared (full daemon), bare aedes + an in-process JSON
 * subscriber, and Mosquitto + an mqtt.js subscriber, in one run. Per target and round: the
 * first-connect herd of the N provisioned devices (paced at BENCH_HERD_RATE/s), RSS before and after
 * (young generation shown apart), then per offered rate PUBACK p50/p99, % acked, CPU µs per heartbeat
 * and the longest event-loop block. Rounds repeat (BENCH_ROUNDS) to show the noise of a shared box;
 * the table prints the median over rounds and the spread.
 *
 * BENCH_STEADY devices (500) connect first and beat at 1,000/s before and during the herd (their PUBACK
 * p99 shows whether a reconnect herd disturbs the fleet already connected).
 * Environment: BENCH_DEVICES (5000), BENCH_RATES (10000,15000,20000), BENCH_STEP_S (6), BENCH_ROUNDS (2),
 * BENCH_HERD_RATE (2500), BENCH_TARGETS (xcared,aedes,mosquitto), BENCH_XCARED_ROOT (another build),
 * BENCH_BEFORE_ROOT (another build, e.g. the commit before a change, as a fourth target in the same run).
 */
export interface StepResult {
  offered: number;
  sent: number;
  ackedPct: number;
  p50: number;
  p99: number;
  cpuUsPerHb: number;
  loopMaxMs: number | null;
}

export interface RoundResult {
  target: string;
  herdS: number;
  herdConnackP99Ms: number;
  herdFailed: number;
  steadyP99BeforeMs: number;
  steadyP99DuringMs: number;
  rssIdleMb: number;
  rssLoadedMb: number;
  youngMb: number | null;
  rssPerDeviceKb: number;
  /** RSS after a full GC with the devices still connected, and per device from it (null: not a Node target). */
  rssAfterGcMb: number | null;
  afterGcPerDeviceKb: number | null;
  steps: StepResult[];
}

const ACK_GRACE_MS = 3000;

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

const HB_TAIL = JSON.stringify({
  bootId: '3f0c9b5e-8a43-4c1e-9d0e-1f2a3b4c5d6e',
  intervalS: 30,
  uptimeS: 3600,
  agentVersion: '1.0.0',
  softwareVersion: '2.3.1',
  integrity: `sha256:${'ab'.repeat(32)}`,
  health: { cpu: 0.12, memUsed: 0.51, diskUsed: 0.4, load1: 0.3 },
  subsystems: [
    { name: 'uplink', ok: true, detail: 'lte rssi -67 dBm, rsrq -9 dB' },
    { name: 'storage', ok: true, detail: '41 % used' },
    { name: 'modbus', ok: true, detail: '12 slaves answering' },
    { name: 'clock', ok: true, detail: 'ntp synced, offset 3 ms' },
  ],
}).slice(1);

/** A heartbeat of ~560 bytes (PROTOCOL.md "Heartbeat"), cheap to build so the generator stays light. */
export function heartbeatPayload(seq: number): Buffer {
  return Buffer.from(`{"seq":${seq},"ts":"${new Date().toISOString()}",${HB_TAIL}`);
}

/** Connects every client, starting `ratePerS` connections a second; CONNACK latency each. */
async function herd(clients: LoadClient[], ratePerS: number): Promise<{ seconds: number; p99: number; failed: number }> {
  const latencies: number[] = [];
  let failed = 0;
  const started = performance.now();
  const pending: Promise<void>[] = [];
  let next = 0;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const due = Math.min(clients.length, Math.floor(((performance.now() - started) / 1000) * ratePerS));
      for (; next < due; next++) {
        pending.push(
          clients[next]!.connect(30_000).then(
            (ms) => void latencies.push(ms),
            () => void failed++,
          ),
        );
      }
      if (next >= clients.length) {
        clearInterval(timer);
        resolve();
      }
    }, 2);
  });
  await Promise.all(pending);
  latencies.sort((a, b) => a - b);
  return { seconds: (performance.now() - started) / 1000, p99: percentile(latencies, 99), failed };
}

async function runStep(target: BenchTarget, clients: LoadClient[], rate: number, stepS: number, seq: { n: number }): Promise<StepResult> {
  const latencies: number[] = [];
  for (const c of clients) {
    c.resetInflight();
    c.onAck = (ms) => void latencies.push(ms);
  }
  await target.stats(); // resets the event-loop maximum
  const cpuBefore = target.cpuPids.reduce((sum, pid) => sum + procStat(pid).cpuTicks, 0);
  const started = performance.now();
  let sent = 0;
  let cursor = 0;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const elapsed = (performance.now() - started) / 1000;
      const due = Math.floor(Math.min(elapsed, stepS) * rate) - sent;
      for (let i = 0; i < due; i++) {
        const c = clients[cursor]!;
        cursor = (cursor + 1) % clients.length;
        c.publish(`fleet/v1/${c.id}/heartbeat`, heartbeatPayload(++seq.n));
        sent++;
      }
      if (elapsed >= stepS) {
        clearInterval(timer);
        resolve();
      }
    }, 5);
  });
  // Acks still in flight count for this step if they land within the grace period.
  const graceEnd = performance.now() + ACK_GRACE_MS;
  while (performance.now() < graceEnd && latencies.length < sent) await new Promise((r) => setTimeout(r, 50));
  const cpuAfter = target.cpuPids.reduce((sum, pid) => sum + procStat(pid).cpuTicks, 0);
  const { loopMaxMs } = await target.stats();
  latencies.sort((a, b) => a - b);
  return {
    offered: rate,
    sent,
    ackedPct: Number(((100 * latencies.length) / Math.max(1, sent)).toFixed(1)),
    p50: Number(percentile(latencies, 50).toFixed(1)),
    p99: Number(percentile(latencies, 99).toFixed(1)),
    cpuUsPerHb: Number((((cpuAfter - cpuBefore) * 1e4) / Math.max(1, latencies.length)).toFixed(1)), // 1 tick = 10 ms
    loopMaxMs: loopMaxMs === null ? null : Number(loopMaxMs.toFixed(0)),
  };
}

/** Devices already connected before the herd, beating at STEADY_RATE: their PUBACK p99 before and during it. */
const STEADY_RATE = 1000;

async function runRound(
  start: () => Promise<BenchTarget>,
  ids: string[],
  steadyIds: string[],
  rates: number[],
  stepS: number,
  herdRate: number,
  log: (s: string) => void,
): Promise<RoundResult> {
  const target = await start();
  try {
    const tokens = await target.provision([...steadyIds, ...ids]);
    await new Promise((r) => setTimeout(r, 1000));
    const idle = procStat(target.rssPid);
    const youngIdle = (await target.stats()).youngBytes ?? 0;
    const seq = { n: 0 };
    const steady = steadyIds.map((id) => new LoadClient(id, tokens.get(id)!, target.port));
    await herd(steady, herdRate);
    const steadyLive = steady.filter((c) => c.isConnected());
    const quiet = steadyLive.length ? await runStep(target, steadyLive, STEADY_RATE, 3, seq) : undefined;
    const clients = ids.map((id) => new LoadClient(id, tokens.get(id)!, target.port));
    // Issue 12: the herd must not disturb the devices already connected.
    const [h, during] = await Promise.all([
      herd(clients, herdRate),
      steadyLive.length ? runStep(target, steadyLive, STEADY_RATE, ids.length / herdRate + 1, seq) : Promise.resolve(undefined),
    ]);
    const live = [...steadyLive, ...clients.filter((c) => c.isConnected())];
    log(
      `  ${target.name}: herd of ${ids.length} in ${h.seconds.toFixed(2)} s, CONNACK p99 ${h.p99.toFixed(0)} ms, ${h.failed} failed; ` +
        `${steadyLive.length} connected devices at ${STEADY_RATE}/s: PUBACK p99 ${quiet?.p99 ?? '-'} ms before, ${during?.p99 ?? '-'} ms during`,
    );
    await runStep(target, live, Math.min(2500, rates[0] ?? 2500), 3, seq); // warm-up (JIT, first flushes), not reported
    const steps: StepResult[] = [];
    for (const rate of rates) {
      const step = await runStep(target, live, rate, stepS, seq);
      log(
        `  ${target.name}: ${rate}/s -> PUBACK p50 ${step.p50} ms p99 ${step.p99} ms, ${step.ackedPct} % acked, ${step.cpuUsPerHb} CPU µs/hb, loop max ${step.loopMaxMs ?? '-'} ms`,
      );
      steps.push(step);
    }
    const loaded = procStat(target.rssPid);
    const youngLoaded = (await target.stats()).youngBytes;
    // What the connected devices hold, apart from the load's garbage: RSS after a full GC, devices still connected.
    let afterGc: { rssKb: number; youngBytes: number } | undefined;
    if (target.collectGarbage) {
      await target.collectGarbage();
      afterGc = { rssKb: procStat(target.rssPid).rssKb, youngBytes: (await target.stats()).youngBytes ?? 0 };
    }
    for (const c of [...steady, ...clients]) c.close();
    // Per device: the growth of RSS outside the young generation, whose size V8 fixes by load, not devices.
    const perDeviceKb = (loaded.rssKb - (youngLoaded ?? 0) / 1024 - (idle.rssKb - youngIdle / 1024)) / (ids.length + steadyIds.length);
    return {
      target: target.name,
      herdS: Number(h.seconds.toFixed(2)),
      herdConnackP99Ms: Math.round(h.p99),
      herdFailed: h.failed,
      steadyP99BeforeMs: quiet?.p99 ?? NaN,
      steadyP99DuringMs: during?.p99 ?? NaN,
      rssIdleMb: Math.round(idle.rssKb / 1024),
      rssLoadedMb: Math.round(loaded.rssKb / 1024),
      youngMb: youngLoaded === null ? null : Math.round(youngLoaded / 1048576),
      rssPerDeviceKb: Number(perDeviceKb.toFixed(1)),
      rssAfterGcMb: afterGc ? Math.round(afterGc.rssKb / 1024) : null,
      afterGcPerDeviceKb: afterGc
        ? Number(((afterGc.rssKb - afterGc.youngBytes / 1024 - (idle.rssKb - youngIdle / 1024)) / (ids.length + steadyIds.length)).toFixed(1))
        : null,
      steps,
    };
  } finally {
    await target.stop();
  }
}

const fmt = (x: number | null | undefined, digits = 0) => (x === null || x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(digits));
const ratio = (a: number, b: number) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}x` : '-');
const spread = (xs: number[]) => (xs.length > 1 ? ` (${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)})` : '');

/** The table of issue 12, medians over rounds with min-max in parentheses. */
export function formatTable(results: RoundResult[], rates: number[]): string {
  const names = [...new Set(results.map((r) => r.target))];
  const of = (name: string) => results.filter((r) => r.target === name);
  const stepOf = (name: string, rate: number) => of(name).map((r) => r.steps.find((s) => s.offered === rate)).filter((s): s is StepResult => !!s);
  const lines: string[] = [];
  lines.push('| offered hb/s | target | PUBACK p99 ms | % acked | CPU µs/hb | loop max ms | p99 vs bare | CPU vs bare |');
  lines.push('|---:|---|---:|---:|---:|---:|---:|---:|');
  for (const rate of rates) {
    const bareP99 = median(stepOf('bare aedes+sub', rate).map((s) => s.p99));
    const bareCpu = median(stepOf('bare aedes+sub', rate).map((s) => s.cpuUsPerHb));
    for (const name of names) {
      const steps = stepOf(name, rate);
      const p99s = steps.map((s) => s.p99);
      const p99 = median(p99s);
      const cpu = median(steps.map((s) => s.cpuUsPerHb));
      lines.push(
        `| ${rate} | ${name} | ${fmt(p99)}${spread(p99s)} | ${fmt(median(steps.map((s) => s.ackedPct)), 1)} | ${fmt(cpu)}${spread(steps.map((s) => s.cpuUsPerHb))} | ${fmt(median(steps.map((s) => s.loopMaxMs ?? NaN)))} | ${ratio(p99, bareP99)} | ${ratio(cpu, bareCpu)} |`,
      );
    }
  }
  lines.push('');
  lines.push(
    '| target | herd: all connected s | herd CONNACK p99 ms | failed | connected devices p99 ms before / during herd | RSS idle MB | RSS loaded MB | young gen MB | RSS/device KB (young apart) | per device vs bare | RSS after full GC MB | KB/device after GC | after GC vs bare |',
  );
  lines.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  const barePerDevice = median(of('bare aedes+sub').map((r) => r.rssPerDeviceKb));
  const bareAfterGc = median(of('bare aedes+sub').map((r) => r.afterGcPerDeviceKb ?? NaN));
  const bareHerd = median(of('bare aedes+sub').map((r) => r.herdS));
  for (const name of names) {
    const rs = of(name);
    const herdS = median(rs.map((r) => r.herdS));
    const perDevice = median(rs.map((r) => r.rssPerDeviceKb));
    const afterGcPerDevice = median(rs.map((r) => r.afterGcPerDeviceKb ?? NaN));
    lines.push(
      `| ${name} | ${fmt(herdS, 2)} (${ratio(herdS, bareHerd)} bare) | ${fmt(median(rs.map((r) => r.herdConnackP99Ms)))}${spread(rs.map((r) => r.herdConnackP99Ms))} | ${fmt(median(rs.map((r) => r.herdFailed)))} | ${fmt(median(rs.map((r) => r.steadyP99BeforeMs)))} / ${fmt(median(rs.map((r) => r.steadyP99DuringMs)))} | ${fmt(median(rs.map((r) => r.rssIdleMb)))} | ${fmt(median(rs.map((r) => r.rssLoadedMb)))}${spread(rs.map((r) => r.rssLoadedMb))} | ${fmt(median(rs.map((r) => r.youngMb ?? NaN)))} | ${fmt(perDevice, 1)} | ${ratio(perDevice, barePerDevice)} | ${fmt(median(rs.map((r) => r.rssAfterGcMb ?? NaN)))} | ${fmt(afterGcPerDevice, 1)} | ${ratio(afterGcPerDevice, bareAfterGc)} |`,
    );
  }
  return lines.join('\n');
}

export async function runIngestBench(opts: { log?: (s: string) => void } = {}) {
  const log = opts.log ?? ((s: string) => process.stdout.write(`${s}\n`));
  const devices = Number(process.env.BENCH_DEVICES ?? 5000);
  const rates = (process.env.BENCH_RATES ?? '10000,15000,20000').split(',').map(Number);
  const stepS = Number(process.env.BENCH_STEP_S ?? 6);
  const rounds = Number(process.env.BENCH_ROUNDS ?? 2);
  const herdRate = Number(process.env.BENCH_HERD_RATE ?? 2500);
  const starters: Record<string, () => Promise<BenchTarget>> = { xcared: () => startXcared(), aedes: startBareAedes, mosquitto: startMosquitto };
  // BENCH_BEFORE_ROOT: a build of an older commit, driven in the same run as 'xcared (before)'.
  const beforeRoot = process.env.BENCH_BEFORE_ROOT;
  if (beforeRoot) starters.before = () => startXcared(beforeRoot, 'xcared (before)');
  const wanted = (process.env.BENCH_TARGETS ?? `xcared,${beforeRoot ? 'before,' : ''}aedes,mosquitto`).split(',').filter((t) => starters[t]);
  const ids = Array.from({ length: devices }, (_, i) => `bench-${String(i).padStart(6, '0')}`);
  const steadyIds = Array.from({ length: Number(process.env.BENCH_STEADY ?? 500) }, (_, i) => `steady-${String(i).padStart(6, '0')}`);
  log(`${devices} devices (+${steadyIds.length} connected before the herd), ${heartbeatPayload(1).length}-byte QoS 1 heartbeats, rates ${rates.join('/')} per s, ${stepS} s a step, herd at ${herdRate}/s, ${rounds} rounds`);
  const results: RoundResult[] = [];
  for (let round = 1; round <= rounds; round++) {
    log(`round ${round}:`);
    for (const name of wanted) results.push(await runRound(starters[name]!, ids, steadyIds, rates, stepS, herdRate, log));
  }
  log('');
  log(formatTable(results, rates));
  // Compact medians for run.ts's JSON summary (the table above has the spreads).
  const summary: Record<string, unknown> = {};
  for (const name of new Set(results.map((r) => r.target))) {
    const rs = results.filter((r) => r.target === name);
    summary[name] = {
      herdS: median(rs.map((r) => r.herdS)),
      herdConnackP99Ms: median(rs.map((r) => r.herdConnackP99Ms)),
      rssPerDeviceKb: median(rs.map((r) => r.rssPerDeviceKb)),
      afterGcPerDeviceKb: median(rs.map((r) => r.afterGcPerDeviceKb ?? NaN)),
      steps: rates.map((rate) => {
        const steps = rs.map((r) => r.steps.find((s) => s.offered === rate)).filter((s): s is StepResult => !!s);
        return { offered: rate, p99: median(steps.map((s) => s.p99)), ackedPct: median(steps.map((s) => s.ackedPct)), cpuUsPerHb: median(steps.map((s) => s.cpuUsPerHb)) };
      }),
    };
  }
  return { devices, rates, rounds, ...summary };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runIngestBench();
  process.exit(0);
}
