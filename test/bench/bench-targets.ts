import { pathToFileURL } from 'node:url';
import { createWriteStream } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'node:net';
import { tempDir } from '../helpers/temp-dir.js';
import { freePort } from '../../src/demo/daemon.js';
import { procStat } from './bench-store.js';
export { freePort };

/**
 * The three brokers the ingest benchmark drives side by side (issue 12): the full xcared daemon, bare
 * aedes with an in-process JSON subscriber, and Mosquitto with an mqtt.js subscriber. Each is a child
 * process; the benchmark reads its CPU and RSS from /proc.
 */
export interface BenchTarget {
  name: string;
  port: number;
  /** Processes whose CPU time counts for the target (broker plus, for Mosquitto, its subscriber). */
  cpuPids: number[];
  /** The broker process whose RSS is reported. */
  rssPid: number;
  /** Device id -> token the target accepts (the daemon provisions them through its API). */
  provision(ids: string[]): Promise<Map<string, string>>;
  /** Young-generation size and the longest event-loop block since the previous call (null: not Node). */
  stats(): Promise<{ youngBytes: number | null; loopMaxMs: number | null }>;
  /** Run a full GC in the target (Node targets: SIGUSR2 to test/bench/gc-hook.ts); absent for Mosquitto. */
  collectGarbage?(): Promise<void>;
  stop(): Promise<void>;
}

/** Node flags that let the bench trigger a full GC in a Node target (gc-hook.ts). */
const GC_HOOK_ARGS = ['--expose-gc', '--import', pathToFileURL(join(import.meta.dirname, 'gc-hook.js')).href];

/** Node flags of every Node target: the daemon's own, the GC hook, and BENCH_NODE_ARGS (e.g. "--cpu-prof"). */
function nodeTargetArgs(): string[] {
  return [...DAEMON_NODE_ARGS, ...GC_HOOK_ARGS, ...(process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean)];
}

async function collectGarbage(pid: number): Promise<void> {
  process.kill(pid, 'SIGUSR2');
  // Two collections a moment apart: the first frees the load's garbage, the second what finalizers released.
  await new Promise((r) => setTimeout(r, 500));
  process.kill(pid, 'SIGUSR2');
  await new Promise((r) => setTimeout(r, 1000));
}

const repoRoot = join(import.meta.dirname, '..', '..', '..');
/** Node flags the daemon and the bare-aedes reference run with (bin/xcared.js's shebang). */
export const DAEMON_NODE_ARGS = ['--max-semi-space-size=64'];


/** One reading of /proc for every bench (bench-store.ts). */
export { procStat };

function waitForLine(child: ChildProcess, pattern: RegExp, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`timeout waiting for ${pattern}: ${buf.slice(-500)}`)), timeoutMs);
    const onData = (d: Buffer) => {
      buf += d.toString();
      const m = pattern.exec(buf);
      if (m) {
        clearTimeout(timer);
        child.stdout!.off('data', onData);
        child.stdout!.resume();
        resolve(m[1] ?? m[0]);
      }
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`exited ${code}: ${buf.slice(-500)}`)));
  });
}

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} not ready after ${timeoutMs} ms`);
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/**
 * The full daemon from `root` (default this checkout; BENCH_XCARED_ROOT points at another build, e.g.
 * the commit before a change, for a before/after comparison in one run).
 */
export async function startXcared(root = process.env.BENCH_XCARED_ROOT ?? repoRoot, name = 'xcared'): Promise<BenchTarget> {
  const dir = tempDir('xcare-bench-');
  const mqttPort = await freePort();
  const httpPort = await freePort();
  const admin = 'bench-admin-token-0123456789';
  writeFileSync(
    join(dir.path, 'config.yaml'),
    `dataDir: ${dir.path}\nadminToken: ${admin}\nlog: { level: warn }\nmqtt: { host: 127.0.0.1, port: ${mqttPort} }\nhttp: { port: ${httpPort} }\n`,
  );
  const nodeArgs = nodeTargetArgs();
  const child = spawn(process.execPath, [...nodeArgs, join(root, 'dist/src/main.js'), '--config', join(dir.path, 'config.yaml')], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  // BENCH_DAEMON_STDOUT=<file> keeps the daemon's stdout (its log, and V8's output such as --trace-gc).
  if (process.env.BENCH_DAEMON_STDOUT) child.stdout!.pipe(createWriteStream(process.env.BENCH_DAEMON_STDOUT));
  else child.stdout!.resume();
  const http = `http://127.0.0.1:${httpPort}`;
  await waitFor(async () => (await fetch(`${http}/readyz`)).ok, 'xcared', 60_000);
  return {
    name,
    port: mqttPort,
    cpuPids: [child.pid!],
    rssPid: child.pid!,
    collectGarbage: () => collectGarbage(child.pid!),
    async provision(ids) {
      const csv = `id,type,parent,customer,installer,tier,since,tags\n${ids.map((id) => `${id},gateway,,bench,minnovation,xcare,,`).join('\n')}\n`;
      const res = await fetch(`${http}/api/v1/devices/import`, {
        method: 'POST',
        headers: { authorization: `Bearer ${admin}`, 'content-type': 'text/csv' },
        body: csv,
      });
      if (!res.ok) throw new Error(`provisioning failed: HTTP ${res.status} ${await res.text()}`);
      const body = (await res.json()) as { devices: { id: string; token: string }[] };
      return new Map(body.devices.map((d) => [d.id, d.token]));
    },
    async stats() {
      const text = await (await fetch(`${http}/metrics`)).text();
      const young = /^nodejs_heap_space_size_total_bytes\{space="new"\} (\S+)/m.exec(text);
      const lag = /^nodejs_eventloop_lag_max_seconds (\S+)/m.exec(text);
      return { youngBytes: young ? Number(young[1]) : null, loopMaxMs: lag ? Number(lag[1]) * 1000 : null };
    },
    async stop() {
      await stopChild(child);
      dir.cleanup();
    },
  };
}

/** Bare aedes plus an in-process subscriber that parses each heartbeat (test/bench/bare-aedes.ts). */
export async function startBareAedes(): Promise<BenchTarget> {
  // The same flags as the daemon, so a profile of the reference sits beside the daemon's.
  const nodeArgs = nodeTargetArgs();
  const child = spawn(process.execPath, [...nodeArgs, join(repoRoot, 'dist/test/bench/bare-aedes.js'), '0'], {
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
  });
  if (process.env.BENCH_DAEMON_STDOUT) child.stdout!.pipe(createWriteStream(`${process.env.BENCH_DAEMON_STDOUT}.bare`));
  const port = Number(await waitForLine(child, /^(\d+)\n/m, 20_000));
  return {
    name: 'bare aedes+sub',
    port,
    cpuPids: [child.pid!],
    rssPid: child.pid!,
    collectGarbage: () => collectGarbage(child.pid!),
    provision: async (ids) => new Map(ids.map((id) => [id, 'any-token'])),
    stats: () =>
      new Promise((resolve) => {
        child.once('message', (m: { youngBytes: number; loopMaxMs: number }) => resolve({ youngBytes: m.youngBytes, loopMaxMs: m.loopMaxMs }));
        child.send({ stats: true });
      }),
    stop: () => stopChild(child),
  };
}

export const MOSQUITTO = process.env.BENCH_MOSQUITTO ?? '/usr/sbin/mosquitto';

/** Mosquitto 2 (anonymous, no persistence) plus an mqtt.js subscriber process (test/bench/mqtt-subscriber.ts). */
export async function startMosquitto(): Promise<BenchTarget> {
  const dir = tempDir('xcare-bench-mosq-');
  const port = await freePort();
  writeFileSync(
    join(dir.path, 'mosquitto.conf'),
    `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\nmax_queued_messages 100000\n`,
  );
  const broker = spawn(MOSQUITTO, ['-c', join(dir.path, 'mosquitto.conf')], { stdio: ['ignore', 'ignore', 'inherit'] });
  await waitFor(
    () =>
      new Promise<boolean>((resolve) => {
        const s = connect({ port, host: '127.0.0.1' }, () => {
          s.destroy();
          resolve(true);
        });
        s.on('error', () => resolve(false));
      }),
    'mosquitto',
    20_000,
  );
  const sub = spawn(process.execPath, [join(repoRoot, 'dist/test/bench/mqtt-subscriber.js'), String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await waitForLine(sub, /ready/, 20_000);
  return {
    name: 'mosquitto+sub',
    port,
    cpuPids: [broker.pid!, sub.pid!],
    rssPid: broker.pid!,
    provision: async (ids) => new Map(ids.map((id) => [id, 'any-token'])),
    stats: async () => ({ youngBytes: null, loopMaxMs: null }),
    async stop() {
      await stopChild(sub);
      await stopChild(broker);
      dir.cleanup();
    },
  };
}
