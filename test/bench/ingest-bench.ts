import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { openDatabase } from '../../src/db/database.js';
import { hashToken } from '../../src/registry/device-token.js';
import { LoadClient } from './mqtt-load.js';
import { tempDir } from '../helpers/temp-dir.js';

/**
 * Ingest benchmark (issue 2): N authenticated devices publish QoS 1 heartbeats at stepped offered
 * rates through the full daemon (auth, ACL, validation, SQLite) and through a bare aedes in the same
 * run. Prints, per step, offered and achieved rate and PUBACK p50/p99; then the highest sustained
 * rate (achieved >= 95 % of offered), daemon RSS per connection and CPU µs per heartbeat.
 */
export interface StepResult {
  offered: number;
  achieved: number;
  p50: number;
  p99: number;
  cpuUsPerMsg: number;
}

export interface TargetResult {
  name: string;
  steps: StepResult[];
  sustained: number;
  /** Highest step sustained with PUBACK p99 under 100 ms. */
  sustainedUnder100ms: number;
  rssBeforeMb: number;
  rssAfterMb: number;
  rssPerDeviceKb: number;
}

const root = join(import.meta.dirname, '..', '..', '..');

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function procStat(pid: number): { rssKb: number; cpuTicks: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { rssKb, cpuTicks: Number(fields[11]) + Number(fields[12]) };
}

const TICK_US = 1e6 / 100; // USER_HZ is 100 on Linux

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function connectAll(clients: LoadClient[], concurrency: number): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < clients.length) await clients[next++]!.connect();
    }),
  );
}

function heartbeat(seq: number): Buffer {
  return Buffer.from(
    JSON.stringify({
      seq,
      ts: new Date().toISOString(),
      bootId: '3f0c9b5e-8a43-4c1e-9d0e-1f2a3b4c5d6e',
      intervalS: 30,
      uptimeS: 3600,
      agentVersion: '1.0.0',
      softwareVersion: '2.3.1',
      integrity: `sha256:${'ab'.repeat(32)}`,
      health: { cpu: 0.12, memUsed: 0.51, diskUsed: 0.4, load1: 0.3 },
      subsystems: [{ name: 'uplink', ok: true, detail: '' }],
    }),
  );
}

async function runSteps(clients: LoadClient[], pid: number, rates: number[], stepS: number, log: (s: string) => void): Promise<StepResult[]> {
  const results: StepResult[] = [];
  let seq = 0;
  for (const rate of rates) {
    const latencies: number[] = [];
    let acks = 0;
    for (const c of clients) c.onAck = (ms) => {
      acks++;
      latencies.push(ms);
    };
    const startStat = procStat(pid);
    const started = performance.now();
    let sent = 0;
    let cursor = 0;
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        const elapsed = (performance.now() - started) / 1000;
        if (elapsed >= stepS) {
          clearInterval(timer);
          resolve();
          return;
        }
        const due = Math.floor(elapsed * rate) - sent;
        for (let i = 0; i < due; i++) {
          const c = clients[cursor]!;
          cursor = (cursor + 1) % clients.length;
          c.publish(`fleet/v1/${c.id}/heartbeat`, heartbeat(++seq));
          sent++;
        }
      }, 5);
    });
    const elapsedS = (performance.now() - started) / 1000;
    const endStat = procStat(pid);
    // Let in-flight acks land before the next step, without counting them in this step's rate.
    const achieved = acks / elapsedS;
    await new Promise((r) => setTimeout(r, 500));
    latencies.sort((a, b) => a - b);
    const step = {
      offered: rate,
      achieved: Math.round(achieved),
      p50: Number(percentile(latencies, 50).toFixed(1)),
      p99: Number(percentile(latencies, 99).toFixed(1)),
      cpuUsPerMsg: Number((((endStat.cpuTicks - startStat.cpuTicks) * TICK_US) / Math.max(1, acks)).toFixed(1)),
    };
    log(`  offered ${rate}/s -> achieved ${step.achieved}/s, PUBACK p50 ${step.p50} ms p99 ${step.p99} ms, ${step.cpuUsPerMsg} CPU µs/hb`);
    results.push(step);
    if (achieved < rate * 0.8) break; // far past saturation: further steps only queue
  }
  return results;
}

function waitForLine(child: ChildProcess, pattern: RegExp, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`timeout waiting for ${pattern}: ${buf.slice(-500)}`)), timeoutMs);
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = pattern.exec(buf);
      if (m) {
        clearTimeout(timer);
        resolve(m[1] ?? m[0]);
      }
    });
    child.once('exit', (code) => reject(new Error(`exited ${code}: ${buf.slice(-500)}`)));
  });
}

async function measure(
  name: string,
  child: ChildProcess,
  port: number,
  ids: string[],
  token: string,
  rates: number[],
  stepS: number,
  log: (s: string) => void,
): Promise<TargetResult> {
  const before = procStat(child.pid!);
  const clients = ids.map((id) => new LoadClient(id, token, port));
  const t0 = performance.now();
  await connectAll(clients, 100);
  log(`${name}: ${ids.length} devices connected in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  await new Promise((r) => setTimeout(r, 1000));
  const after = procStat(child.pid!);
  // Warm-up (not counted): JIT, first flushes after the connection storm.
  await runSteps(clients, child.pid!, [Math.min(2500, rates[0] ?? 2500)], 3, () => {});
  const steps = await runSteps(clients, child.pid!, rates, stepS, log);
  for (const c of clients) c.close();
  const sustained = Math.max(0, ...steps.filter((s) => s.achieved >= 0.95 * s.offered).map((s) => s.offered));
  const sustainedUnder100ms = Math.max(0, ...steps.filter((s) => s.achieved >= 0.95 * s.offered && s.p99 < 100).map((s) => s.offered));
  return {
    name,
    steps,
    sustained,
    sustainedUnder100ms,
    rssBeforeMb: Math.round(before.rssKb / 1024),
    rssAfterMb: Math.round(after.rssKb / 1024),
    rssPerDeviceKb: Number(((after.rssKb - before.rssKb) / ids.length).toFixed(1)),
  };
}

export async function runIngestBench(opts: { devices?: number; rates?: number[]; stepS?: number; log?: (s: string) => void } = {}) {
  const devices = opts.devices ?? Number(process.env.BENCH_DEVICES ?? 5000);
  const rates = opts.rates ?? (process.env.BENCH_RATES ? process.env.BENCH_RATES.split(',').map(Number) : [2500, 5000, 10000, 15000, 20000, 25000, 30000]);
  const stepS = opts.stepS ?? Number(process.env.BENCH_STEP_S ?? 6);
  const log = opts.log ?? ((s: string) => process.stdout.write(`${s}\n`));
  const dir = tempDir('xcare-bench-');
  const token = 'bench-token-0123456789abcdef';
  const ids = Array.from({ length: devices }, (_, i) => `bench-${String(i).padStart(6, '0')}`);
  // Provision straight into SQLite: one scrypt hash shared by all rows (same token); CONNECT still
  // verifies it per device, as in production.
  const db = openDatabase(join(dir.path, 'xcare.db'));
  const hash = await hashToken(token);
  const insert = db.prepare(
    `INSERT INTO devices (id, type, customer, installer, tier, tags, token_hash, created_at) VALUES (?, 'gateway', 'bench', 'minnovation', 'xcare', '[]', ?, ?)`,
  );
  db.transaction(() => ids.forEach((id) => insert.run(id, hash, Date.now())))();
  db.close();

  const results: TargetResult[] = [];
  try {
    const mqttPort = await freePort();
    const httpPort = await freePort();
    writeFileSync(
      join(dir.path, 'config.yaml'),
      `dataDir: ${dir.path}\nadminToken: bench-admin-token-0123456789\nlog: { level: warn }\nmqtt: { host: 127.0.0.1, port: ${mqttPort} }\nhttp: { port: ${httpPort} }\n`,
    );
    // The daemon runs as bin/xcared.js runs it (its shebang sizes V8's young generation);
    // BENCH_NODE_ARGS adds flags, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile under load.
    const nodeArgs = ['--max-semi-space-size=64', ...(process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean)];
    const daemon = spawn(process.execPath, [...nodeArgs, join(root, 'dist/src/main.js'), '--config', join(dir.path, 'config.yaml')], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    daemon.stdout!.resume();
    await waitForHttp(`http://127.0.0.1:${httpPort}/readyz`, 30_000);
    results.push(await measure('xcared (full daemon)', daemon, mqttPort, ids, token, rates, stepS, log));
    daemon.kill('SIGTERM');
    await new Promise((r) => daemon.once('exit', r));

    const bare = spawn(process.execPath, [join(root, 'dist/test/bench/bare-aedes.js'), '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const barePort = Number(await waitForLine(bare, /^(\d+)\n/m, 10_000));
    results.push(await measure('bare aedes', bare, barePort, ids, token, rates, stepS, log));
    bare.kill('SIGTERM');
    await new Promise((r) => bare.once('exit', r));
  } finally {
    dir.cleanup();
  }
  const [full, bare] = results as [TargetResult, TargetResult];
  const atSustained = (r: TargetResult) => r.steps.find((s) => s.offered === r.sustained);
  const summary = {
    devices,
    fullSustainedPerS: full.sustained,
    fullSustainedP99Under100msPerS: full.sustainedUnder100ms,
    fullP99AtSustainedMs: atSustained(full)?.p99 ?? NaN,
    fullCpuUsPerHeartbeat: atSustained(full)?.cpuUsPerMsg ?? NaN,
    fullRssMb: full.rssAfterMb,
    fullRssPerDeviceKb: full.rssPerDeviceKb,
    bareSustainedPerS: bare.sustained,
    bareSustainedP99Under100msPerS: bare.sustainedUnder100ms,
    bareP99AtSustainedMs: atSustained(bare)?.p99 ?? NaN,
    bareCpuUsPerHeartbeat: atSustained(bare)?.cpuUsPerMsg ?? NaN,
    bareRssPerDeviceKb: bare.rssPerDeviceKb,
    ratioFullToBare: Number((full.sustained / Math.max(1, bare.sustained)).toFixed(2)),
    ratioFullToBareP99Under100ms: Number((full.sustainedUnder100ms / Math.max(1, bare.sustainedUnder100ms)).toFixed(2)),
  };
  log('ingest summary:');
  for (const [k, v] of Object.entries(summary)) log(`  ${k.padEnd(26)} ${v}`);
  return summary;
}

async function waitForHttp(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url);
      if (res.ok) return;
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} not ready after ${timeoutMs} ms`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runIngestBench();
}
